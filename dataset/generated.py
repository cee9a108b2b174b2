"""Output folders of the synthetic generator: never write into someone's data, replace only our own files.

A generated dataset root holds `.synthetic.json`, written before the first frame, that lists the
video folders and annotation files the generator owns there. Writing into a non-empty folder is
refused unless `replace` is given, and replacing removes only what that record lists (image frames in
the listed video folders, the listed files, folders left empty), so anything else in the folder
(a user's files, preprocessing outputs such as `features/fullFrame-256x256px/`) is kept.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Mapping

from utils.atomic import atomic_path
from utils.errors import UserError

OWNER_RECORD = ".synthetic.json"
FRAME_SUFFIXES = (".png", ".jpg")


class OutputFolderError(UserError):
    """The output folder cannot be used as asked; the message says why and what to do."""


def read_owner_record(root: str | Path) -> dict | None:
    """The generator's record in `root`, or None when the generator did not write there."""
    try:
        record = json.loads((Path(root) / OWNER_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("video_dirs"), list) else None


def write_owner_record(root: str | Path, params: Mapping, video_dirs: Iterable[str], files: Iterable[str]) -> None:
    """Record (atomically) the folders and files the generator owns below `root`, as relative paths."""
    record = {**params, "video_dirs": sorted(video_dirs), "files": sorted(files)}
    with atomic_path(Path(root) / OWNER_RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")


def _inside(root: Path, relative: str) -> Path:
    """`root / relative`, refusing paths that leave `root` (a tampered record must not delete elsewhere)."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()) or path == root.resolve():
        raise OutputFolderError(f"{root / OWNER_RECORD} lists {relative!r}, outside the folder; "
                                "refusing to delete anything")
    return path


def _prune_empty(root: Path, start: Path) -> None:
    """Remove `start` and its parents up to (not including) `root` while they are empty."""
    root = root.resolve()
    while start != root and start.is_relative_to(root):
        try:
            start.rmdir()
        except OSError:  # not empty (or gone): stop climbing
            return
        start = start.parent


def remove_generated(root: str | Path) -> int:
    """Delete what the generator's record lists in `root`; returns how many files were removed."""
    root = Path(root)
    record = read_owner_record(root)
    if record is None:
        raise OutputFolderError(f"{root} has no {OWNER_RECORD}: it was not written by dataset.synthetic, "
                                "so --replace deletes nothing there; choose an empty or new --out folder "
                                "(or remove this one yourself)")
    targets = [_inside(root, name) for name in record.get("files", [])]
    folders = [_inside(root, name) for name in record["video_dirs"]]
    for folder in folders:
        if folder.is_dir():
            targets += [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    removed = 0
    for path in targets:
        if path.is_file():
            path.unlink()
            removed += 1
    for path in folders + [t.parent for t in targets]:
        _prune_empty(root, path)
    (root / OWNER_RECORD).unlink()
    return removed


def prepare_output(root: str | Path, replace: bool) -> None:
    """Make `root` ready for a new dataset: it must be new or empty, or (with `replace`) our own earlier output."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise OutputFolderError(f"{root} exists and is not a folder; choose another --out")
    entries = sorted(os.listdir(root)) if root.is_dir() else []
    if entries and not replace:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise OutputFolderError(f"{root} is not empty ({shown}); choose an empty or new --out folder, or pass "
                                "--replace to replace a dataset this generator wrote there (only its own files "
                                "are removed)")
    if entries:
        remove_generated(root)
