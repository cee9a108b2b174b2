"""Shared preprocessing steps: annotation tables, info dicts, gloss dict, STM files and frame resizing."""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from utils.atomic import atomic_path

# Written into a finished video's output folder; its presence is what makes a rerun skip the video.
COMPLETE_MARKER = ".complete.json"
STM_END_TIME = "1.79769e+308"  # sclite's "until the end" used by every published STM

InfoDict = dict  # {'prefix': str, 0: {...}, 1: {...}, ...} exactly as the original tools saved it
Normaliser = Callable[[Sequence[str]], list[str]]  # glosses -> glosses as scored


class PreprocessError(RuntimeError):
    """A raw dataset problem the user must fix; the message names the file and what to do."""


@dataclass(frozen=True)
class TableRow:
    """One data line of an annotation table with its 1-based line number in the file."""

    line_no: int
    fields: tuple[str, ...]


def require_dir(path: Path, what: str) -> Path:
    """Return `path` if it is a directory, else raise naming it and what was expected there."""
    if not path.is_dir():
        raise PreprocessError(
            f"{what} not found: {path}. Pass --dataset-root pointing at the unpacked download."
        )
    return path


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
    """np.save a dict atomically (readers load it with allow_pickle=True).item())."""
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, dict(obj), allow_pickle=True)


def stm_lines(info: Mapping[Any, Any], normalise: Normaliser | None = None) -> list[str]:
    """STM lines `<fileid> 1 <signer> 0.0 1.79769e+308 <glosses>` in info order."""
    lines = []
    for entry in info_entries(info):
        glosses = split_glosses(entry["label"])
        label = " ".join(normalise(glosses) if normalise is not None else glosses)
        lines.append(f"{entry['fileid']} 1 {entry['signer']} 0.0 {STM_END_TIME} {label}\n")
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


def resolve_scoring_normaliser(dataset: str) -> Normaliser:
    """The scorer's gloss normalisation for `dataset` (evaluation.normalise; identity for CSL-Daily)."""
    from evaluation.normalise import normalise_glosses  # single source of the scoring rules

    return functools.partial(normalise_glosses, dataset=dataset)


# ----------------------------------------------------------------------------- frame resizing


def parse_resolution(res: str) -> tuple[int, int]:
    """'256x256px' -> (width, height)."""
    match = re.fullmatch(r"\s*(\d+)x(\d+)(px)?\s*", res)
    if match is None or int(match.group(1)) <= 0 or int(match.group(2)) <= 0:
        raise ValueError(f"bad resolution {res!r}; expected WIDTHxHEIGHTpx like '256x256px'")
    return int(match.group(1)), int(match.group(2))


def resolution_tag(res: str) -> str:
    """Canonical folder tag of a resolution: '256x256' -> '256x256px'."""
    width, height = parse_resolution(res)
    return f"{width}x{height}px"


@dataclass(frozen=True)
class ResizeJob:
    """Resize all frames of one video from `src_dir` (matching `pattern`) into `dst_dir`."""

    key: int
    src_dir: str
    pattern: str
    dst_dir: str


@dataclass
class ResizeResult:
    """Outcome of one video: frames written, unreadable frames skipped, whether it was already done."""

    key: int
    dst_dir: str
    written: int
    unreadable: list[str] = field(default_factory=list)
    skipped: bool = False


def list_frames(directory: str | Path, pattern: str) -> list[str]:
    """Sorted file names in `directory` matching the glob `pattern` (hidden/temp files excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.glob(pattern) if not p.name.startswith("."))


def read_marker(dst_dir: str | Path) -> dict | None:
    """The completion record of a finished video folder, or None when the video is not finished."""
    marker = Path(dst_dir) / COMPLETE_MARKER
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _encode(image: np.ndarray, suffix: str) -> bytes:
    """Encode an image for its file suffix (PNG lossless, JPEG at high quality)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, image, params)
    if not ok:
        raise RuntimeError(f"could not encode a {suffix} image")
    return buf.tobytes()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write bytes via a temporary sibling and rename: an interruption never leaves half a frame."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def resize_video(job: ResizeJob, size: tuple[int, int]) -> ResizeResult:
    """Lanczos-resize one video's frames; resumable: a finished folder (marker present) is skipped."""
    done = read_marker(job.dst_dir)
    if done is not None:
        return ResizeResult(job.key, job.dst_dir, int(done["frames"]), list(done["unreadable"]), True)
    dst = Path(job.dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    written, unreadable = 0, []
    for name in list_frames(job.src_dir, job.pattern):
        src = os.path.join(job.src_dir, name)
        image = cv2.imread(src, cv2.IMREAD_COLOR)
        if image is None:
            unreadable.append(src)
            continue
        resized = cv2.resize(image, size, interpolation=cv2.INTER_LANCZOS4)
        write_bytes_atomic(dst / name, _encode(resized, Path(name).suffix))
        written += 1
    record = {"frames": written, "unreadable": unreadable, "size": list(size)}
    write_text_atomic(dst / COMPLETE_MARKER, json.dumps(record))
    return ResizeResult(job.key, job.dst_dir, written, unreadable, False)


def _resize_star(args: tuple[ResizeJob, tuple[int, int]]) -> ResizeResult:
    """Pool.imap helper (top-level so it pickles)."""
    return resize_video(*args)


def run_resize(
    jobs: Sequence[ResizeJob], size: tuple[int, int], workers: int = 1, desc: str = "resize"
) -> list[ResizeResult]:
    """Resize every job with a progress bar, in `workers` processes when > 1; results in job order."""
    args = [(job, size) for job in jobs]
    results: list[ResizeResult] = []
    with tqdm(total=len(jobs), desc=desc, unit="video", dynamic_ncols=True) as bar:
        if workers > 1 and len(jobs) > 1:
            with Pool(min(workers, len(jobs))) as pool:
                for result in pool.imap_unordered(_resize_star, args, chunksize=4):
                    results.append(result)
                    bar.update()
        else:
            for item in args:
                results.append(_resize_star(item))
                bar.update()
    return sorted(results, key=lambda r: r.key)


@dataclass
class RunSummary:
    """Counts reported at the end of a preprocessing run."""

    videos: int = 0
    resized: int = 0
    already_done: int = 0
    frames: int = 0
    unreadable: list[str] = field(default_factory=list)

    def add(self, results: Iterable[ResizeResult]) -> None:
        """Accumulate per-video resize results."""
        for result in results:
            self.videos += 1
            self.already_done += int(result.skipped)
            self.resized += int(not result.skipped)
            self.frames += result.written
            self.unreadable.extend(result.unreadable)

    def lines(self) -> Iterator[str]:
        """Human-readable summary lines."""
        yield (
            f"videos: {self.videos} ({self.resized} resized, {self.already_done} already done), "
            f"frames written: {self.frames}, unreadable frames skipped: {len(self.unreadable)}"
        )
        for path in self.unreadable[:20]:
            yield f"  unreadable (skipped): {path}"
        if len(self.unreadable) > 20:
            yield f"  ... and {len(self.unreadable) - 20} more"
