"""The one base class of the errors a user can fix (input, config, files); the CLIs print these
as a single `error:` line and let every other exception keep its traceback."""
from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """A problem with the user's input, config, files or environment; the message says what to do."""


def run_cli(main: Callable[[], object]) -> int:
    """Run `main()`; a UserError becomes one `error:` line on stderr and exit status 2."""
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
