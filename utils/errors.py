"""The one base class of the errors a user can fix (input, config, files); the CLIs print these
as a single `error:` line and let every other exception keep its traceback."""
from __future__ import annotations

import difflib
import errno
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterable

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FORMAT_WARNING = warnings.formatwarning  # Python's own, restored after each command


class UserError(Exception):
    """A problem with the user's input, config, files or environment; the message says what to do."""


# ValueError stays a second base: code converting a lower layer's ValueError (a bad config
# value, a malformed file) into a ConfigError with the key's name catches it as ValueError.
class ConfigError(UserError, ValueError):
    """A configuration or command-line problem, with the key (and file) it comes from."""


# FileNotFoundError stays a second base: start-up checks catch OSError around whole steps
# (build a feeder, read its first video) and add the keys that name the missing path.
class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named, or a step should have written, does not exist; the
    message names the path and the command that makes it."""


# ValueError stays a second base: readers catch a lower layer's ValueError for any unusable
# file (damaged, malformed or refused) and re-raise it naming the key or the file's role.
class BadFileError(UserError, ValueError):
    """A file the user gave exists but cannot be used (malformed, damaged, refused); the message
    names the file (and line) and what to do."""


def is_out_of_space(exc: BaseException | None) -> bool:
    """Whether `exc` (or an exception it chains) is a full disk or an exceeded quota: what every
    writer (checkpoints, resizing, packing) turns into one line saying how much room it needs."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc):  # torch's writer re-raises it as RuntimeError
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def closest_key(key: str, valid: Iterable[str]) -> str:
    """A hint naming the valid name closest to `key` ("; did you mean 'x'?"), or an empty string."""
    by_lower = {name.lower(): name for name in valid}  # 'csl' -> 'CSL': case alone differs
    match = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.5)
    return f"; did you mean '{by_lower[match[0]]}'?" if match else ""


def user_message(exc: UserError) -> str:
    """The message of `exc`, without the worker's traceback that a DataLoader puts around an error
    raised in a worker process when it raises it again in the main process."""
    text, kind = str(exc), type(exc)
    if not text.startswith(f"Caught {kind.__name__} in DataLoader worker process"):
        return text
    name = kind.__qualname__
    if kind.__module__ not in ("__main__", "builtins"):
        name = f"{kind.__module__}.{name}"
    at = text.rfind(f"\n{name}: ")  # the traceback's last line: "<module>.<class>: <message>"
    return text[at + len(name) + 3:].rstrip("\n") if at >= 0 else text


def one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                     line: str | None = None) -> str:
    """A warning as the commands show it: `warning: <message>` for the project's own warnings
    (no source line: it is for the user, not the code's author), Python's format for the others."""
    if Path(filename).resolve().is_relative_to(PROJECT_ROOT) and ".venv" not in Path(filename).parts:
        return f"warning: {message}\n"
    return FORMAT_WARNING(message, category, filename, lineno, line)


def run_cli(main: Callable[[], object]) -> int:
    """Run `main()`; a UserError becomes one `error:` line on stderr and exit status 2, and the
    project's warnings print as one `warning:` line each.

    `main` returning an int (a CLI's own exit status) passes it through; None means 0.
    """
    warnings.formatwarning = one_line_warning
    try:
        status = main()
    except UserError as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = FORMAT_WARNING
    return status if isinstance(status, int) else 0
