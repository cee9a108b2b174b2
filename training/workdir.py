"""A run's work dir: the record of what runs created there, one run at a time, and --overwrite
moving only what the record names aside.

Runs record each top-level entry in <work_dir>/.stfnet-run.json as they create it (`claim`, before
the entry exists, so that a kill leaves nothing unrecorded). A run owns exactly what that record
names: a work dir holding entries no run recorded is refused for a new run unless it is empty, and
`--overwrite` moves only recorded entries into <work_dir>.previous once every start-up check has
passed; that folder is deleted when the new run has written its first checkpoint (or finished a
phase that writes none). A run holds <work_dir>/.stfnet-run.lock from start to exit.
"""
from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

from utils.atomic import atomic_path
from utils.errors import ConfigError

MANIFEST = ".stfnet-run.json"
LOCK = ".stfnet-run.lock"
MOVED_MARKER = ".stfnet-moved-run"  # in <work_dir>.previous: made by --overwrite, safe to delete
PREVIOUS_SUFFIX = ".previous"

# The names a run creates at the top of its work dir (training/checkpoints.py, utils/record.py,
# seq_scripts.evaluate's <tag>/ folders, main.py's summaries, the default features folder, an
# evaluation's eval_<weights>/ folder). They never grant ownership: they keep an edited record
# from naming anything else, and make a run refuse an unrecorded entry it would write over.
RUN_OUTPUTS = ("log.txt", "config.yaml", "metrics.csv", "curves.png", "tensorboard", "last.pt",
               "last_previous.pt", "best_model.pt", "epoch[0-9][0-9][0-9]_model.pt", "epoch_[0-9]*",
               "eval", "eval_*", "test_best", "train_results.json", "test_results.json", "features")


def is_run_output(name: str) -> bool:
    """Whether a top-level entry name is one a run writes."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_OUTPUTS)


def temporary(name: str) -> str:
    """The name of the temporary sibling utils.atomic.atomic_path writes `name` through."""
    return f".{name}.tmp"


def read_record(work_dir: Path) -> dict | None:
    """The record of `work_dir` ({'written': [names], 'phase': str}); None when it has none or
    it cannot be read. Only names of run outputs count: an edited record cannot make --overwrite
    move anything else."""
    try:
        record = json.loads((work_dir / MANIFEST).read_text())
        names = record["written"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(names, list):
        return None
    kept = sorted({n for n in names if isinstance(n, str) and "/" not in n and is_run_output(n)})
    return {"written": kept, "phase": record.get("phase") if isinstance(record.get("phase"), str) else None}


def read_manifest(work_dir: Path) -> list[str] | None:
    """The entries runs recorded in `work_dir`; None when it has no (readable) record."""
    record = read_record(work_dir)
    return None if record is None else record["written"]


@contextlib.contextmanager
def _record_lock(work_dir: Path) -> Iterator[None]:
    """Hold an advisory lock on the folder while its record is read and rewritten (an evaluation
    adding its folder to a training run's record while that run adds a checkpoint)."""
    fd = os.open(work_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def claim(work_dir: Path, *names: str, phase: str | None = None) -> None:
    """Record `names` as created by a run in `work_dir`, before they are created. An existing
    entry that no run recorded is refused: the run would write over the user's file."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with _record_lock(work_dir):
        record = read_record(work_dir) or {"written": [], "phase": None}
        new = [n for n in names if n not in record["written"]]
        if not new and (phase is None or record["phase"] is not None):
            return
        foreign = [n for n in new if (work_dir / n).exists() or (work_dir / n).is_symlink()]
        if foreign:
            raise ConfigError(f"work dir {work_dir}: {foreign[0]} exists but no run recorded it; "
                              f"a run never writes over what it did not create: move it away or "
                              f"pass another --work-dir")
        unknown = [n for n in new if not is_run_output(n)]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a name runs write (training/workdir.RUN_OUTPUTS)")
        record = {"written": sorted(set(record["written"]) | set(new)),
                  "phase": record["phase"] or phase}
        with atomic_path(work_dir / MANIFEST) as tmp:
            tmp.write_text(json.dumps(record, indent=1) + "\n")


def unrecorded_entries(work_dir: Path) -> list[str]:
    """The top-level entries of `work_dir` that no run recorded (the record, the lock and the
    temporaries of recorded entries are a run's own)."""
    if not work_dir.is_dir():
        return []
    names = read_manifest(work_dir) or []
    own = {MANIFEST, LOCK, temporary(MANIFEST), *names, *(temporary(n) for n in names)}
    return sorted(p.name for p in work_dir.iterdir() if p.name not in own)


def check_ownership(work_dir: Path) -> None:
    """Refuse a work dir holding entries no run recorded, unless the record covers them: a new
    run needs an empty (or new) folder; a recorded run's folder may hold the user's other files,
    but none by a name the run writes."""
    foreign = unrecorded_entries(work_dir)
    if not foreign:
        return
    if read_record(work_dir) is None:
        raise ConfigError(f"work dir {work_dir} is not empty and no run recorded its entries "
                          f"({_listing(foreign)}): it is not a run's folder; pass a new or empty "
                          f"--work-dir (key 'work_dir')")
    clashing = [name for name in foreign if is_run_output(name)]
    if clashing:
        raise ConfigError(f"work dir {work_dir} holds {_listing(clashing)}, which no run recorded "
                          f"but a run writes by that name; move them away or pass another --work-dir")


def _listing(names: list[str], shown: int = 4) -> str:
    """A few names, and how many more."""
    return ", ".join(names[:shown]) + (f", ... (+{len(names) - shown})" if len(names) > shown else "")


def owned_entries(work_dir: Path) -> list[Path]:
    """What --overwrite may move: the recorded entries that exist, their temporaries, the record."""
    names = read_manifest(work_dir) or []
    candidates = sorted({*names, *(temporary(n) for n in names)})
    found = [work_dir / n for n in candidates if (work_dir / n).exists() or (work_dir / n).is_symlink()]
    manifest = work_dir / MANIFEST
    return found + ([manifest] if manifest.exists() else [])


def has_checkpoint(work_dir: Path) -> bool:
    """Whether the run recorded in `work_dir` wrote a checkpoint file."""
    return any(name.endswith(".pt") and (work_dir / name).is_file() for name in read_manifest(work_dir) or [])


def previous_dir(work_dir: Path) -> Path:
    """Where --overwrite keeps the old run until the new one has written a checkpoint."""
    return work_dir.with_name(work_dir.name + PREVIOUS_SUFFIX)


def is_moved_run(folder: Path) -> bool:
    """Whether `folder` is one that move_previous_run made (a real folder carrying the marker)."""
    return not folder.is_symlink() and (folder / MOVED_MARKER).is_file()


def move_previous_run(work_dir: Path, log: Callable[[str], None]) -> Path | None:
    """Move the old run's recorded entries into <work_dir>.previous; None when there was nothing.

    A .previous folder left by an earlier --overwrite whose run never wrote a checkpoint stays
    (it is the last run that did): the checkpoint-less run is deleted instead."""
    entries = owned_entries(work_dir) if work_dir.is_dir() else []
    if not entries:
        return None
    aside = previous_dir(work_dir)
    if is_moved_run(aside) and not has_checkpoint(work_dir):
        for entry in entries:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        log(f"--overwrite: deleted the {len(entries)} entries of a run that wrote no checkpoint; "
            f"{aside} still holds the run before it until this one writes its first checkpoint")
        return aside
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


# ----------------------------------------------------------------------------- one run at a time


def _start_time(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    """Whether `pid` runs on this host and is the process that took the lock (not a reused PID)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _start_time(pid)
    return started is None or now is None or now == started


class WorkDirLock:
    """<work_dir>/.stfnet-run.lock, created exclusively and removed at exit: one run per work dir.

    A lock whose process died (kill -9, a power loss) on this host is stale and taken over; one
    held on another host cannot be checked and is refused naming that host."""

    def __init__(self, work_dir: Path) -> None:
        self.path = work_dir / LOCK
        self.held = False

    def acquire(self, log: Callable[[str], None]) -> None:
        """Take the lock, or raise a ConfigError naming the run that holds it."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _start_time(os.getpid()),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None or self._is_stale(holder, me["host"]):
                    log(f"note: {self.path} was left by a run that no longer runs "
                        f"({_describe(holder)}); taken over")
                    self.path.unlink(missing_ok=True)
                    continue
                raise ConfigError(f"work dir {self.path.parent} is in use by another run "
                                  f"({_describe(holder)}); wait for it, or pass another --work-dir "
                                  f"(if that run is gone, delete {self.path})") from None
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(me) + "\n")
            self.held = True
            return
        raise ConfigError(f"work dir {self.path.parent}: cannot take {self.path}; another run is "
                          f"starting there")

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            # Being written this instant, or damaged: a fresh file is taken as held.
            try:
                return None if time.time() - self.path.stat().st_mtime > 10 else {"pid": "?", "host": "?"}
            except OSError:
                return None
        return holder if isinstance(holder, dict) else None

    @staticmethod
    def _is_stale(holder: dict, host: str) -> bool:
        pid = holder.get("pid")
        return holder.get("host") == host and isinstance(pid, int) and not _alive(pid, holder.get("started"))

    def release(self) -> None:
        """Remove the lock file (if this run holds it)."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _describe(holder: dict | None) -> str:
    """'PID 123 on host x since ...' for a lock's content."""
    if not holder:
        return "unreadable lock file"
    return f"PID {holder.get('pid')} on host {holder.get('host')} since {holder.get('since', '?')}"
