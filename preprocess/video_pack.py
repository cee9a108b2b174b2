"""Videos decoded straight into a split's JPEG frame pack: no frame files in between.

Worker processes decode (PyAV), turn upright, optionally resample to --fps, resize (Lanczos, as
resizing does) and encode each video; the main process appends the videos to the pack's partial
files in table order. After every video the frames and their table rows are synced, then a line
recording the video (its id, its source files' size, time and hash, where it ends) is appended to
`<split>.videos.partial`: a run killed at any point continues after the last recorded video, and
writes the same bytes as a run never interrupted. A finished pack records every video's source, so
a rerun copies the encoded frames of unchanged videos from it and decodes only new or changed ones.
"""
from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from dataset.packed import (TABLE_ROW, PackedFrames, PackError, append_video, encode_frame, pack_settings, packed_paths,
                            publish_pack)
from dataset.video_files import (DecodedVideo, VideoReadError, decode_video, list_frame_files, read_image_rgb,
                                 resize_frame)
from preprocess.manifest import compare_files, file_record
from utils.atomic import atomic_path

SourceRecord = dict  # frame or video file name -> [size, mtime_ns, digest], all in one folder


@dataclass(frozen=True)
class VideoJob:
    """One video to pack: its id, its file or frame folder, where it was listed (for messages)."""

    fileid: str
    path: str
    where: str  # '<table>:<line>'


@dataclass
class Packed:
    """A video's encoded frames (or why it could not be decoded) and what decoding found."""

    fileid: str
    frames: list[bytes] = field(default_factory=list)
    decoded: int = 0
    fps: float | None = None
    source: SourceRecord = field(default_factory=dict)
    error: str | None = None


def source_files(path: str | Path) -> tuple[Path, list[str]]:
    """(folder, names) of the files a video is made of: the file itself, or a folder's frames."""
    path = Path(path)
    if path.is_dir():
        return path, [p.name for p in list_frame_files(path)]
    return path.parent, [path.name]


def source_record(path: str | Path) -> SourceRecord:
    """Size, modification time and content hash of every file of a video."""
    folder, names = source_files(path)
    return {name: file_record(folder / name) for name in names}


def source_is_current(path: str | Path, record: SourceRecord) -> bool:
    """Whether a video's files are still those recorded (a stat each; a hash only where a time moved)."""
    try:
        folder, names = source_files(path)
    except (OSError, VideoReadError):
        return False
    return sorted(names) == sorted(record) and not compare_files(folder, record, verify=False)[0]


def decode_settings(size: tuple[int, int], fps: float | None, fmt: str, quality: int) -> dict:
    """Everything besides the sources that determines a video pack's bytes."""
    return {**pack_settings(fmt, quality), "size": [int(size[0]), int(size[1])], "fps": fps,
            "interpolation": "INTER_LANCZOS4"}


def _frames(path: Path, fps: float | None, found: DecodedVideo) -> Iterator[np.ndarray]:
    """The RGB frames of a video file (decoded, resampled) or of a frame folder (as they are)."""
    if path.is_dir():
        for frame_path in list_frame_files(path):
            found.decoded += 1
            yield read_image_rgb(frame_path)
        return
    yield from decode_video(path, fps, found)


def encode_video(job: VideoJob, settings: dict) -> Packed:
    """Decode, resize and encode one video (a Pool worker); a bad video comes back with its error."""
    size = tuple(settings["size"])
    result = Packed(job.fileid)
    found = DecodedVideo()
    try:
        result.source = source_record(job.path)
        result.frames = [encode_frame(resize_frame(frame, size), settings["format"], settings["quality"] or 0)
                         for frame in _frames(Path(job.path), settings["fps"], found)]
        if not result.frames:
            raise VideoReadError(f"no frames at --fps {settings['fps']}")
    except VideoReadError as error:
        result.error, result.frames = str(error), []
    except OSError as error:
        result.error, result.frames = f"unreadable ({error.strerror or error})", []
    result.decoded, result.fps = found.decoded, found.fps
    return result


def _encode_star(args: tuple[VideoJob, dict]) -> Packed:
    """Pool helper (top-level so it pickles)."""
    return encode_video(*args)


def videos_partial(packed_dir: Path, split: str) -> Path:
    """The per-video progress log of a split's pack while it is written."""
    return Path(packed_dir) / f"{split}.videos.partial"


def finished_pack(packed_dir: Path, split: str, settings: dict) -> PackedFrames | None:
    """The split's finished pack when it was made with `settings` (its videos can be reused), else None."""
    try:
        pack = PackedFrames.open(packed_dir, split)
    except (PackError, OSError, ValueError):
        return None
    return pack if pack.index.get("decode") == settings and "table_sources" in pack.index else None


def _read_log(path: Path, settings: dict) -> list[dict]:
    """The videos an interrupted run recorded with these settings (a torn last line ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records = []
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            break
        if number == 0:
            if record != {"settings": settings}:
                return []
            continue
        records.append(record)
    return records


@dataclass
class SplitPack:
    """What packing a split gave: per video its frames in the pack, decoded frames and source fps."""

    frames: dict[str, int] = field(default_factory=dict)
    decoded: dict[str, int] = field(default_factory=dict)
    fps: dict[str, float | None] = field(default_factory=dict)
    bad: dict[str, str] = field(default_factory=dict)  # fileid -> error (with --skip-bad-videos)
    decoded_now: int = 0
    reused: int = 0
    up_to_date: bool = False


class BadVideoError(PackError):
    """A video that does not decode, named with its table row (without --skip-bad-videos)."""


def pack_videos(packed_dir: Path, split: str, jobs: Sequence[VideoJob], settings: dict, workers: int = 1,
                skip_bad: bool = False, dataset: str | None = None, repack: bool = False) -> SplitPack:
    """Write (or bring up to date) the pack of one split from its videos, in `jobs` order."""
    packed_dir = Path(packed_dir)
    paths = packed_paths(packed_dir, split)
    fmt = settings["format"]
    old = None if repack else finished_pack(packed_dir, split, settings)
    old_sources = old.index["table_sources"] if old is not None else {}
    reusable = {job.fileid for job in jobs if job.fileid in old_sources
                and source_is_current(job.path, old_sources[job.fileid]["source"])}
    if old is not None and [job.fileid for job in jobs] == old.index["table_order"] and len(reusable) == len(jobs):
        return _summary_of(old.index, up_to_date=True)

    log_path = videos_partial(packed_dir, split)
    done = [] if repack else _read_log(log_path, settings)
    kept = 0  # the interrupted run's videos that are still what this run would write
    for record, job in zip(done, jobs):
        if (record["fileid"] != job.fileid or not source_is_current(job.path, record["source"])
                or (record["error"] is not None and not skip_bad)):
            break
        kept += 1
    done = done[:kept]
    frames_done = done[-1]["frames_end"] if done else 0
    bytes_done = done[-1]["bytes_end"] if done else 0
    data_partial = paths.data_partial(fmt)
    if done and (not data_partial.is_file() or data_partial.stat().st_size < bytes_done
                 or not paths.table_partial.is_file() or paths.table_partial.stat().st_size < TABLE_ROW * frames_done):
        done, frames_done, bytes_done = [], 0, 0
    packed_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(log_path) as tmp:
        tmp.write_text("".join(json.dumps(line) + "\n" for line in [{"settings": settings}, *done]), encoding="utf-8")

    result = SplitPack(reused=0)
    for record in done:
        _note(result, record)
    todo = [job for job in jobs[len(done):] if job.fileid not in reusable]
    decoded = _decode_all(todo, settings, workers)
    mode = "r+b" if done else "wb"
    with data_partial.open(mode) as data, paths.table_partial.open(mode) as table, \
            log_path.open("a", encoding="utf-8") as log, \
            tqdm(total=len(jobs), initial=len(done), desc=f"decode+pack {split}", unit="video",
                 dynamic_ncols=True) as bar:
        data.truncate(bytes_done)
        table.truncate(TABLE_ROW * frames_done)
        data.seek(bytes_done)
        table.seek(TABLE_ROW * frames_done)
        for job in jobs[len(done):]:
            if job.fileid in reusable:
                video = _copy_from(old, job.fileid)
                result.reused += 1
            else:
                video = next(decoded)
                result.decoded_now += 1
            if video.error is not None and not skip_bad:
                decoded.close()
                raise BadVideoError(f"{job.where}: video {job.path}: {video.error}; fix or remove the row, or "
                                    f"pass --skip-bad-videos to leave it out (the {len(result.frames)} videos "
                                    f"before it are kept: a rerun continues)")
            bytes_done = append_video(data, table, video.frames, bytes_done)
            frames_done += len(video.frames)
            record = {"fileid": job.fileid, "source": video.source, "frames": len(video.frames),
                      "frames_end": frames_done,
                      "bytes_end": bytes_done, "decoded": video.decoded, "fps": video.fps, "error": video.error}
            log.write(json.dumps(record) + "\n")
            log.flush()
            os.fsync(log.fileno())
            _note(result, record)
            bar.update()
    index = _index(settings, result, jobs, frames_done, bytes_done, dataset,
                   {record["fileid"]: record["source"] for record in _read_log(log_path, settings)})
    publish_pack(paths, fmt, index)
    log_path.unlink(missing_ok=True)
    return result


def _note(result: SplitPack, record: dict) -> None:
    """Add one recorded video to a split's result."""
    if record["error"] is not None:
        result.bad[record["fileid"]] = record["error"]
        return
    result.frames[record["fileid"]] = record["frames"]
    result.decoded[record["fileid"]] = record["decoded"]
    result.fps[record["fileid"]] = record["fps"]


def _decode_all(jobs: Sequence[VideoJob], settings: dict, workers: int) -> Iterator[Packed]:
    """The jobs' results in order, decoded `workers` at a time (a bounded window: memory stays small)."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield encode_video(job, settings)
        return
    with Pool(min(workers, len(jobs))) as pool:
        window: deque = deque()
        pending = iter(jobs)
        for job in pending:
            window.append(pool.apply_async(encode_video, (job, settings)))
            if len(window) >= 2 * workers:
                break
        while window:
            result = window.popleft().get()
            job = next(pending, None)
            if job is not None:
                window.append(pool.apply_async(encode_video, (job, settings)))
            yield result


def _copy_from(pack: PackedFrames, fileid: str) -> Packed:
    """A video of a finished pack, its encoded frames copied as they are (no decoding)."""
    start, count = pack.index["videos"][fileid]
    table = np.load(pack.table_path, mmap_mode="r")
    data = np.memmap(pack.data_path, dtype=np.uint8, mode="r", shape=(pack.index["data_bytes"],))
    frames = [data[int(begin):int(begin) + int(length)].tobytes() for begin, length, _crc in table[start:start + count]]
    meta = pack.index["table_sources"][fileid]
    return Packed(fileid, frames, meta["decoded"], meta["fps"], meta["source"])


def _index(settings: dict, result: SplitPack, jobs: Sequence[VideoJob], frames: int, data_bytes: int,
           dataset: str | None, sources: dict) -> dict:
    """The finished pack's index: the usual fields, plus each video's source (its path and files, which
    training checks: dataset.pack_freshness.changed_sources) and decoding record."""
    order, paths = [job.fileid for job in jobs], {job.fileid: os.path.abspath(job.path) for job in jobs}
    entries, start = {}, 0
    for fileid in order:
        if fileid in result.frames:
            entries[fileid] = [start, result.frames[fileid]]
            start += result.frames[fileid]
    width, height = settings["size"]
    index = {**pack_settings(settings["format"], settings["quality"]), "source": None,
             "frame_shape": [height, width, 3], "num_frames": frames, "data_bytes": data_bytes,
             "videos": entries, "decode": settings, "table_order": order, "skipped": dict(result.bad),
             "table_sources": {fileid: {"path": paths[fileid], "source": sources[fileid],
                                        "decoded": result.decoded[fileid], "fps": result.fps[fileid]}
                               for fileid in entries}}
    if dataset is not None:
        index["dataset"] = dataset
    return index


def _summary_of(index: dict, up_to_date: bool) -> SplitPack:
    """A split's result read back from its finished pack."""
    result = SplitPack(up_to_date=up_to_date, bad=dict(index.get("skipped", {})))
    for fileid, (_start, count) in index["videos"].items():
        meta = index["table_sources"][fileid]
        result.frames[fileid], result.decoded[fileid], result.fps[fileid] = count, meta["decoded"], meta["fps"]
    return result
