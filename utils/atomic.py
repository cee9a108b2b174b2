"""Atomic file replacement: readers see the old file or the complete new one, never a part."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; renamed over `path` on success, removed on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A sibling, so the rename stays on one file system; the leading dot hides it from globs.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def link_or_copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Make `dst` hold `src`'s bytes: a hard link where the file system allows, else a copy; atomic.

    A link is safe here because files written through `atomic_path` are never changed in place,
    only replaced by a rename.
    """
    with atomic_path(dst) as tmp:
        tmp.unlink(missing_ok=True)  # a leftover of a crash would make os.link fail
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
