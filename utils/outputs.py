"""Where a tool writes: never over one of its inputs, and over an existing file only with --force."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

from utils.errors import ConfigError

FORCE_HINT = "pass --force to replace it"


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file or folder (links and hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _named_input(path: Path, inputs: Mapping[str, str | os.PathLike | None]) -> str | None:
    """'<option> <value>' of the input that `path` is, else None."""
    return next((f"{option} {value}" for option, value in inputs.items()
                 if value and _same(path, Path(value))), None)


def check_output_file(out: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None],
                      force: bool, option: str = "--out") -> Path:
    """`out` is a file path that is no input, no folder, and new (or `force`)."""
    path = Path(out)
    named = _named_input(path, inputs)
    if named:
        raise ConfigError(f"{option} {out} is the input {named}: an output never replaces an input; "
                          f"name another {option}")
    if path.is_dir():
        raise ConfigError(f"{option} {out} is a folder; name a file in it (e.g. {path / 'model.onnx'})")
    if path.exists() and not force:
        raise ConfigError(f"{option} {out} exists; {FORCE_HINT}, or name another {option}")
    return path


def check_output_dir(out_dir: str | os.PathLike, names: Iterable[str],
                     inputs: Mapping[str, str | os.PathLike | None], force: bool,
                     option: str = "--out") -> Path:
    """`out_dir` is a folder (or new) and no input; each of its entries `names` the tool writes is
    no input and new (or `force`)."""
    folder = Path(out_dir)
    named = _named_input(folder, inputs)
    if named:
        raise ConfigError(f"{option} {out_dir} is the input {named}: an output never replaces an "
                          f"input; name another {option}")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {out_dir} is a file, not a folder; name a folder for the outputs")
    for name in names:
        target = folder / name
        named = _named_input(target, inputs)
        if named:
            raise ConfigError(f"{option} {out_dir}: {target} is the input {named}; name another {option}")
        if target.exists() and not force:
            raise ConfigError(f"{option} {out_dir}: {target} exists; {FORCE_HINT}, or name another {option}")
    return folder
