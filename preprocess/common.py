"""Shared preprocessing steps: annotation tables, info dicts, gloss dict, STM files and frame resizing."""
from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from dataset.layout import MANIFEST, read_manifest
from dataset.registry import DatasetSpec
from evaluation.stm import stm_line
from preprocess.manifest import (
    JPEG_QUALITY,
    NEW,
    REASONS,
    REQUESTED,
    Verdict,
    build_manifest,
    check_video,
    file_record,
    resize_settings,
)
from utils.atomic import atomic_path
from utils.errors import UserError, is_out_of_space

InfoDict = dict  # {'prefix': str, 0: {...}, 1: {...}, ...} exactly as the original tools saved it
Normaliser = Callable[[Sequence[str]], list[str]]  # glosses -> glosses as scored


class PreprocessError(UserError):
    """A raw dataset problem the user must fix; the message names the file and what to do."""


@dataclass(frozen=True)
class TableRow:
    """One data line of an annotation table with its 1-based line number in the file."""

    line_no: int
    fields: tuple[str, ...]


def read_table(path: Path, header: Sequence[str], sep: str = "|") -> list[TableRow]:
    """Read a `sep`-separated annotation file, checking its header and the field count of every line."""
    if not path.is_file():
        raise PreprocessError(
            f"annotation file not found: {path}. Check --dataset-root (it must contain this file)."
        )
    with path.open("r", encoding="utf-8-sig") as handle:
        lines = handle.read().splitlines()
    expected = sep.join(header)
    if not lines or lines[0].strip() != expected:
        found = lines[0].strip() if lines else "<empty file>"
        raise PreprocessError(
            f"{path}:1: unexpected header {found!r}; expected {expected!r}. "
            "Is this the right file of the right dataset release?"
        )
    rows = []
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = tuple(line.rstrip("\r\n").split(sep))
        if len(fields) != len(header):
            raise PreprocessError(
                f"{path}:{line_no}: {len(fields)} fields, expected {len(header)} ({expected!r}): {line!r}"
            )
        rows.append(TableRow(line_no=line_no, fields=fields))
    return rows


def drop_rows(rows: Sequence[TableRow], broken: Iterable[int]) -> list[TableRow]:
    """Drop data rows by 0-based position (pandas' row index of the csv), as the original did."""
    broken = set(broken)
    return [row for i, row in enumerate(rows) if i not in broken]


def make_info_dict(prefix: str, entries: Sequence[Mapping[str, Any]]) -> InfoDict:
    """Assemble the original tools' info layout: key 'prefix' plus consecutive int keys from 0."""
    info: InfoDict = {"prefix": prefix}
    for idx, entry in enumerate(entries):
        info[idx] = dict(entry)
    return info


def info_entries(info: Mapping[Any, Any]) -> list[dict]:
    """The per-video entries of an info dict in index order (skips 'prefix' and other str keys)."""
    return [info[k] for k in sorted(k for k in info if isinstance(k, (int, np.integer)))]


def split_glosses(label: str) -> list[str]:
    """Glosses of an annotation string; runs of whitespace (present in the raw csvs) separate them."""
    return label.split()


def build_gloss_dict(infos: Iterable[Mapping[Any, Any]]) -> dict[str, list[int]]:
    """Count glosses over all splits and index them from 1 in code point order (0 is the CTC blank)."""
    counts: dict[str, int] = {}
    for info in infos:
        for entry in info_entries(info):
            for gloss in split_glosses(entry["label"]):
                counts[gloss] = counts.get(gloss, 0) + 1
    return {gloss: [idx + 1, counts[gloss]] for idx, gloss in enumerate(sorted(counts))}


def save_npy_dict(path: Path, obj: Mapping[Any, Any]) -> None:
    """np.save a dict atomically (readers load it with utils.npy.load_npy_object, as plain data only)."""
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, dict(obj), allow_pickle=True)


def stm_lines(info: Mapping[Any, Any], normalise: Normaliser | None = None) -> list[str]:
    """STM lines `<fileid> 1 <signer> 0.0 1.79769e+308 <glosses>` in info order."""
    lines = []
    for entry in info_entries(info):
        glosses = split_glosses(entry["label"])
        if normalise is not None:
            glosses = normalise(glosses)
        lines.append(stm_line(entry["fileid"], entry["signer"], glosses))
    return lines


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file via a temporary sibling and rename, so readers never see half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_stm(
    path: Path,
    info: Mapping[Any, Any],
    normalise: Normaliser | None = None,
    official: Path | None = None,
) -> str:
    """Write the ground-truth STM: a copy of the official file when given, else from the annotations.

    Returns 'official' or 'annotations' (which source was used) for the run summary.
    """
    if official is not None and official.is_file():
        with atomic_path(path) as tmp:
            shutil.copyfile(official, tmp)
        return "official"
    write_text_atomic(path, "".join(stm_lines(info, normalise)))
    return "annotations"


def resolve_scoring_normaliser(spec: DatasetSpec) -> Normaliser:
    """The scorer's gloss normalisation for dataset `spec` (evaluation.normalise; identity for CSL-Daily)."""
    from evaluation.normalise import normalise_glosses  # single source of the scoring rules

    return functools.partial(normalise_glosses, spec=spec)


# ----------------------------------------------------------------------------- frame resizing


@dataclass(frozen=True)
class ResizeJob:
    """Resize all frames of one video from `src_dir` (matching `pattern`) into `dst_dir`."""

    key: int
    src_dir: str
    pattern: str
    dst_dir: str
    fileid: str = ""
    redo: bool = False  # redo even if its manifest says it is up to date


@dataclass
class ResizeResult:
    """Outcome of one video: frames written, unreadable frames skipped, why it was (re)done."""

    key: int
    dst_dir: str
    written: int
    unreadable: list[str] = field(default_factory=list)
    skipped: bool = False  # up to date: nothing written
    reason: str | None = None  # why it was resized (manifest.REASONS); None when skipped
    detail: str = ""  # what exactly was stale, for the summary
    fileid: str = ""
    adopted: bool = False  # an older version's output, verified and given a manifest


def list_frames(directory: str | Path, pattern: str) -> list[str]:
    """Sorted file names in `directory` matching the glob `pattern` (hidden/temp files excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.glob(pattern) if not p.name.startswith("."))


def _encode(image: np.ndarray, suffix: str) -> bytes:
    """Encode an image for its file suffix (PNG lossless, JPEG at high quality)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, image, params)
    if not ok:
        raise RuntimeError(f"could not encode a {suffix} image")
    return buf.tobytes()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write bytes via a temporary sibling and rename: an interruption never leaves half a frame."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _decode(data: bytes) -> np.ndarray | None:
    """BGR image from encoded bytes, None when they are not a readable image."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None


def resize_video(job: ResizeJob, size: tuple[int, int], verify: bool = False) -> ResizeResult:
    """Lanczos-resize one video's frames unless its manifest proves the output current (see preprocess.manifest)."""
    settings = resize_settings(size)
    src, dst = Path(job.src_dir), Path(job.dst_dir)
    names = list_frames(src, job.pattern)
    verdict = Verdict(REQUESTED) if job.redo else check_video(
        src, names, dst, list_frames(dst, job.pattern), settings, verify)
    if verdict.reason is None:
        if verdict.manifest is not None:
            write_text_atomic(dst / MANIFEST, json.dumps(verdict.manifest))
        done = verdict.manifest or read_manifest(dst)
        return ResizeResult(job.key, job.dst_dir, int(done["frames"]), list(done["unreadable"]), True,
                            fileid=job.fileid, adopted=verdict.adopted)
    # Old marker and frames go first: an interrupted redo leaves a partial folder, which the next run
    # redoes, never old frames mixed with new ones (or left over from a longer earlier version).
    (dst / MANIFEST).unlink(missing_ok=True)
    for name in list_frames(dst, job.pattern):
        (dst / name).unlink()
    dst.mkdir(parents=True, exist_ok=True)
    sources, outputs, unreadable = {}, {}, []
    for name in names:
        path = src / name
        data = path.read_bytes()
        sources[name] = file_record(path, data)
        image = _decode(data)
        if image is None:
            unreadable.append(str(path))
            continue
        encoded = _encode(cv2.resize(image, size, interpolation=getattr(cv2, settings["interpolation"])),
                         Path(name).suffix)
        write_bytes_atomic(dst / name, encoded)
        outputs[name] = file_record(dst / name, encoded)
    write_text_atomic(dst / MANIFEST, json.dumps(build_manifest(settings, sources, outputs, unreadable)))
    return ResizeResult(job.key, job.dst_dir, len(outputs), unreadable, False, verdict.reason, verdict.detail,
                        job.fileid)


def _resize_star(args: tuple[ResizeJob, tuple[int, int], bool]) -> ResizeResult:
    """Pool.imap helper (top-level so it pickles)."""
    return resize_video(*args)


def run_resize(
    jobs: Sequence[ResizeJob], size: tuple[int, int], workers: int = 1, desc: str = "resize",
    verify: bool = False,
) -> list[ResizeResult]:
    """Resize every job with a progress bar, in `workers` processes when > 1; results in job order.

    A full disk is one PreprocessError (the finished videos are kept: a rerun continues)."""
    args = [(job, size, verify) for job in jobs]
    results: list[ResizeResult] = []
    with tqdm(total=len(jobs), desc=desc, unit="video", dynamic_ncols=True) as bar:
        try:
            if workers > 1 and len(jobs) > 1:
                with Pool(min(workers, len(jobs))) as pool:
                    for result in pool.imap_unordered(_resize_star, args, chunksize=4):
                        results.append(result)
                        bar.update()
            else:
                for item in args:
                    results.append(_resize_star(item))
                    bar.update()
        except OSError as error:
            if not is_out_of_space(error):
                raise
            raise PreprocessError(resize_out_of_space(error, jobs, len(results))) from None
    return sorted(results, key=lambda r: r.key)


def resize_out_of_space(error: OSError, jobs: Sequence[ResizeJob], finished: int) -> str:
    """The report of a disk that filled up while resizing: where, how far it got, what to do."""
    where = os.path.commonpath([job.dst_dir for job in jobs])
    return (f"no space left on the disk of {where} while resizing ({error.strerror}): {finished} of "
            f"{len(jobs)} videos were finished and are kept; free some space and rerun the same command "
            f"(it continues with the rest), or choose another --output-dir")


@dataclass
class RunSummary:
    """Counts reported at the end of a preprocessing run."""

    videos: int = 0
    up_to_date: int = 0
    adopted: int = 0
    frames: int = 0
    unreadable: list[str] = field(default_factory=list)
    done: dict[str, list[ResizeResult]] = field(default_factory=dict)  # reason -> videos resized for it

    def add(self, results: Iterable[ResizeResult]) -> None:
        """Accumulate per-video resize results."""
        for result in results:
            self.videos += 1
            self.up_to_date += int(result.skipped)
            self.adopted += int(result.adopted)
            if not result.skipped:
                self.done.setdefault(result.reason, []).append(result)
            self.frames += result.written
            self.unreadable.extend(result.unreadable)

    def count(self, *reasons: str) -> int:
        """Videos resized for any of `reasons`."""
        return sum(len(self.done.get(reason, [])) for reason in reasons)

    def lines(self) -> Iterator[str]:
        """Human-readable summary lines: counts, then why each group of videos was redone."""
        redone = [reason for reason in REASONS if reason != NEW]
        adopted = f", {self.adopted} of them adopted from an older version" if self.adopted else ""
        yield (
            f"videos: {self.videos} ({self.count(NEW)} resized, {self.count(*redone)} redone, "
            f"{self.up_to_date} up to date{adopted}), frames: {self.frames}, "
            f"unreadable frames skipped: {len(self.unreadable)}"
        )
        for reason in redone:
            results = self.done.get(reason, [])
            if results:
                names = ", ".join(r.fileid or r.dst_dir for r in results[:5]) + (", ..." if len(results) > 5 else "")
                example = f"; e.g. {results[0].detail}" if results[0].detail else ""
                yield f"  redone, {reason}: {len(results)} ({names}){example}"
        for path in self.unreadable[:20]:
            yield f"  unreadable (skipped): {path}"
        if len(self.unreadable) > 20:
            yield f"  ... and {len(self.unreadable) - 20} more"
