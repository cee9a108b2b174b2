"""A run's work dir: the record of what runs wrote there, and --overwrite moving only that aside.

Runs record the entries they write (checkpoints, logs, metrics, evaluation folders, ...) in
<work_dir>/.stfnet-run.json. `--overwrite` moves exactly those entries into <work_dir>.previous
once every start-up check has passed, and that folder is deleted when the new run has written its
first checkpoint (or finished a phase that writes none): a run that fails early leaves the old one
there. Nothing else in the work dir is ever moved or deleted.
"""
from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path
from typing import Callable

MANIFEST = ".stfnet-run.json"
MOVED_MARKER = ".stfnet-moved-run"  # in <work_dir>.previous: made by --overwrite, safe to delete
PREVIOUS_SUFFIX = ".previous"

# The names a run writes at the top of its work dir (training/checkpoints.py, utils/record.py,
# seq_scripts.evaluate's <tag>/ folders, main.py's summaries, the default features folder).
RUN_OUTPUTS = ("log.txt", "config.yaml", "metrics.csv", "curves.png", "tensorboard", "last.pt",
               "last_previous.pt", "best_model.pt", "epoch[0-9][0-9][0-9]_model.pt", "epoch_[0-9]*",
               "eval", "test_best", "train_results.json", "test_results.json", "features",
               ".*.tmp", "*.tmp.png", "*.csv.tmp")


def is_run_output(name: str) -> bool:
    """Whether a top-level entry name is one a run writes."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_OUTPUTS)


def read_manifest(work_dir: Path) -> list[str] | None:
    """The entries runs recorded in `work_dir`; None when it has no (readable) record."""
    try:
        names = json.loads((work_dir / MANIFEST).read_text())["written"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(names, list):
        return None
    # Only names of run outputs: an edited record cannot make --overwrite move anything else.
    return [n for n in names if isinstance(n, str) and "/" not in n and is_run_output(n)]


def record_outputs(work_dir: Path) -> None:
    """Add the run's entries now present in `work_dir` to its record (atomically)."""
    if not work_dir.is_dir():
        return
    names = set(read_manifest(work_dir) or [])
    names |= {p.name for p in work_dir.iterdir() if is_run_output(p.name)}
    tmp = work_dir / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"written": sorted(names)}, indent=1) + "\n")
    tmp.replace(work_dir / MANIFEST)


def owned_entries(work_dir: Path) -> list[Path]:
    """What --overwrite may move: the recorded entries that exist (for a work dir of a version
    without the record, the entries named like run outputs), and the record itself."""
    names = read_manifest(work_dir)
    if names is None:
        names = [p.name for p in work_dir.iterdir() if is_run_output(p.name)]
    found = [work_dir / n for n in sorted(set(names)) if (work_dir / n).exists() or (work_dir / n).is_symlink()]
    manifest = work_dir / MANIFEST
    return found + ([manifest] if manifest.exists() else [])


def previous_dir(work_dir: Path) -> Path:
    """Where --overwrite keeps the old run until the new one has written a checkpoint."""
    return work_dir.with_name(work_dir.name + PREVIOUS_SUFFIX)


def is_moved_run(folder: Path) -> bool:
    """Whether `folder` is one that move_previous_run made (it carries the marker file)."""
    return (folder / MOVED_MARKER).is_file()


def move_previous_run(work_dir: Path, log: Callable[[str], None]) -> Path | None:
    """Move the old run's entries into <work_dir>.previous (replacing an older such folder,
    which start-up checked was made here too); None when there was nothing to move."""
    entries = owned_entries(work_dir) if work_dir.is_dir() else []
    if not entries:
        return None
    aside = previous_dir(work_dir)
    if is_moved_run(aside):
        shutil.rmtree(aside)
    aside.mkdir()
    (aside / MOVED_MARKER).write_text(f"{work_dir.resolve()}\n")
    for entry in entries:
        entry.rename(aside / entry.name)
    log(f"--overwrite: moved the previous run's {len(entries)} entries to {aside}; it is deleted "
        f"once this run has written its first checkpoint")
    return aside


def discard_previous_run(aside: Path | None) -> None:
    """Delete the folder move_previous_run made, once the new run has written what replaces it."""
    if aside is not None and is_moved_run(aside):
        shutil.rmtree(aside)
