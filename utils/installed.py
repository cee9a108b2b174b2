"""Imported first by every command: without the pinned requirements (a `python3` outside the venv),
one line saying how to install instead of a ModuleNotFoundError traceback."""
from __future__ import annotations

import importlib.util
import sys

# Import names of the requirements every command needs (requirements.txt pins them).
REQUIRED = ("torch", "numpy", "yaml", "cv2")


def missing_requirements() -> list[str]:
    """The REQUIRED modules this interpreter cannot import (found without importing them)."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def install_hint(missing: list[str]) -> str:
    """The one line telling the user how to get an interpreter that has `missing`."""
    return (f"error: {', '.join(missing)} not installed for {sys.executable}: run `make install`, then "
            f"`source .venv/bin/activate` (or run the command with .venv/bin/python); README, Install")


if missing := missing_requirements():
    sys.exit(install_hint(missing))  # exit status 1 and the line on stderr
