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


def copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Make `dst` a separate copy of `src` (never a hard link: damage to one leaves the other),
    on disk before it replaces the old `dst`."""
    with atomic_path(dst) as tmp:
        with open(src, "rb") as source, open(tmp, "wb") as target:
            shutil.copyfileobj(source, target, 16 << 20)
            target.flush()
            os.fsync(target.fileno())
    fsync_dir(Path(dst).parent)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a directory's entries so that a rename in it survives a power loss (where supported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
