"""Which dataset preprocessed files belong to: the `dataset.json` that preprocessing writes beside them.

The info files keep the original tools' layout, a dict of 'prefix' and the videos under keys
0..N-1, which the original feeder counts as len(dict) - 1: a dataset key inside them would break
that count. So the name goes into this sidecar instead, with a digest of every file it vouches for
(`<split>_info.npy`, `gloss_dict.npy`). A file changed or replaced since, or written by the original
tools, has no record here: it is reported as unchecked, never taken for the recorded dataset.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from utils.atomic import atomic_path

RECORD = "dataset.json"


def file_digest(path: Path) -> str:
    """Content digest of a small preprocessed file."""
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def write_record(folder: str | Path, dataset: str, names: Iterable[str]) -> Path:
    """Record that the files `names` in `folder` (as they are now) are preprocessed `dataset` data."""
    folder = Path(folder)
    files = {name: file_digest(folder / name) for name in sorted(names) if (folder / name).is_file()}
    path = folder / RECORD
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"dataset": dataset, "files": files}, indent=1) + "\n", encoding="utf-8")
    return path


def recorded_dataset(path: str | Path) -> str | None:
    """The dataset the sidecar beside `path` records for that file as it is now, else None."""
    path = Path(path)
    try:
        record = json.loads((path.parent / RECORD).read_text(encoding="utf-8"))
        digest = record["files"][path.name]
        dataset = record["dataset"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(dataset, str) or not path.is_file() or file_digest(path) != digest:
        return None
    return dataset
