"""Packed frame cache: one file of frames per split plus an index, read through a memory map.

Decoding PNGs frame by frame dominates data loading in this model family. A pack holds a split's
frames in one file: raw RGB (`raw`: reading a clip is a memory copy of only the frames and the
crop window kept, but 196 KB a 256x256 frame), or each frame encoded (`jpeg`, the default: about
1/18 of the raw bytes on camera-like frames; `png`: lossless, about 2/5), decoded in the DataLoader
workers, only the frames the temporal augmentation keeps.

Files of split S in the pack folder: `S.json` (index, written last), `S.u8` / `S.jpeg` / `S.png`
(frames), `S.frames.npy` ((N, 3) int64: byte offset, length and CRC-32 of every frame; a frame
whose bytes no longer match its CRC is reported as corrupt, which decoding alone cannot promise:
JPEG decoders accept most damaged data). While a pack is written, `S.<fmt>.partial`,
`S.frames.partial` and `S.progress.json` hold the finished videos, so that an interrupted run
continues where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Mapping, Sequence

import cv2
import numpy as np

from dataset.images import read_rgb
from dataset.pack_freshness import frames_folder, frames_record
from utils.atomic import atomic_path
from utils.errors import BadFileError, MissingFileError

PACK_VERSION = 2
FORMATS = ("jpeg", "png", "raw")
DEFAULT_FORMAT = "jpeg"
# JPEG quality 90 with 4:2:0 chroma: 10.9 KiB a 256x256 camera-like frame (17.6x under raw, the
# issue's bound is 8x), PSNR 43.8 dB, mean |error| 1.1 grey levels (below the sensor noise);
# q95 costs 45 % more bytes for 1.6 dB (bench/pack_formats.py measures these).
DEFAULT_JPEG_QUALITY = 90
PNG_COMPRESSION = 1  # level 3 saves 7 % of the bytes for 30 % more encoding time
DATA_SUFFIX = {"raw": "u8", "jpeg": "jpeg", "png": "png"}
TABLE_ROW = 3 * 8  # bytes of one frame's (offset, length, crc32) row


class PackError(BadFileError):
    """A pack that is half-written, does not match what it should hold, or has a corrupt entry."""


@dataclass(frozen=True)
class PackPaths:
    """The files of one split's pack."""

    index: Path
    table: Path
    progress: Path
    table_partial: Path

    def data(self, fmt: str) -> Path:
        """The frames file of format `fmt`."""
        return self.index.with_suffix(f".{DATA_SUFFIX[fmt]}")

    def data_partial(self, fmt: str) -> Path:
        """The frames file of format `fmt` while it is written."""
        return self.index.with_suffix(f".{DATA_SUFFIX[fmt]}.partial")


def packed_paths(packed_dir: str | Path, split: str) -> PackPaths:
    """The files of one split's pack in `packed_dir`."""
    base = Path(packed_dir) / split
    return PackPaths(base.with_suffix(".json"), base.with_suffix(".frames.npy"),
                     base.with_suffix(".progress.json"), base.with_suffix(".frames.partial"))


# ----------------------------------------------------------------------------- codecs


def encode_frame(rgb: np.ndarray, fmt: str, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """One (H, W, 3) RGB uint8 frame as the pack stores it."""
    if fmt == "raw":
        return np.ascontiguousarray(rgb).tobytes()
    if fmt == "jpeg":
        import simplejpeg

        return simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=int(quality), colorspace="RGB",
                                      colorsubsampling="420")
    if fmt == "png":
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
        if not ok:
            raise RuntimeError("OpenCV could not PNG-encode a frame")
        return buf.tobytes()
    raise ValueError(f"unknown pack format {fmt!r}; expected one of {', '.join(FORMATS)}")


def decode_frame(data: np.ndarray, fmt: str) -> np.ndarray:
    """An encoded frame (uint8 bytes) back to (H, W, 3) RGB; raises ValueError when it is corrupt.

    JPEG through simplejpeg (libjpeg-turbo, 1.25-1.5x faster than cv2.imdecode + cvtColor here, same
    pixels); PNG through OpenCV.
    """
    if fmt == "jpeg":
        import simplejpeg

        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a readable PNG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- writing


def source_signature(videos: Sequence[tuple[str, Sequence[str | Path]]]) -> str:
    """Digest of the videos' ids, frame names, sizes and modification times: what a pack was made from."""
    sha = hashlib.sha256()
    for fileid, frames in videos:
        sha.update(f"{fileid}\n".encode())
        for path in frames:
            stat = os.stat(path)
            sha.update(f"{Path(path).name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return sha.hexdigest()


def pack_settings(fmt: str, quality: int) -> dict:
    """The settings that make two packs of the same frames identical."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown pack format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return {"version": PACK_VERSION, "format": fmt, "quality": int(quality) if fmt == "jpeg" else None}


def pack_is_current(packed_dir: str | Path, split: str, settings: dict, signature: str,
                    dataset: str | None = None) -> bool:
    """True when the split's finished pack was made with `settings` from the same frames (of `dataset`)."""
    index_path = packed_paths(packed_dir, split).index
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if ({k: index.get(k) for k in settings} != settings or index.get("source") != signature
            or index.get("dataset") != dataset):
        return False
    try:
        PackedFrames.open(packed_dir, split)
    except (PackError, OSError):
        return False
    return True


def _resume_point(paths: PackPaths, fmt: str, expected: dict) -> tuple[int, int, int]:
    """(videos, frames, bytes) already written by an interrupted run of the same pack, else zeros."""
    try:
        progress = json.loads(paths.progress.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0, 0, 0
    data = paths.data_partial(fmt)
    if progress.get("expected") != expected or not data.is_file() or not paths.table_partial.is_file():
        return 0, 0, 0
    done = progress["videos"], progress["frames"], progress["bytes"]
    if data.stat().st_size < done[2] or paths.table_partial.stat().st_size < TABLE_ROW * done[1]:
        return 0, 0, 0
    return done


def append_video(data: BinaryIO, table: BinaryIO, frames: Sequence[bytes], bytes_done: int) -> int:
    """Append one video's encoded frames and their table rows (offset, length, CRC-32) to a pack's
    partial files, synced before a progress record may say the video is there; returns the new size."""
    rows = []
    for encoded in frames:
        data.write(encoded)
        rows.append((bytes_done, len(encoded), zlib.crc32(encoded)))
        bytes_done += len(encoded)
    table.write(np.asarray(rows, dtype=np.int64).reshape(-1, 3).tobytes())
    for handle in (data, table):
        handle.flush()
        os.fsync(handle.fileno())
    return bytes_done


def write_packed(
    packed_dir: str | Path, split: str, videos: Sequence[tuple[str, Sequence[str | Path]]],
    fmt: str = DEFAULT_FORMAT, quality: int = DEFAULT_JPEG_QUALITY,
    on_video: Callable[[int], None] | None = None, dataset: str | None = None,
) -> dict:
    """Pack `videos` (fileid, sorted frame paths) of `dataset` into `packed_dir`; returns the index.

    Resumable: the progress file records the videos whose frames and offsets are on disk (flushed
    and synced first), so a rerun after an interruption truncates the partial files to that point
    and continues. The index is written last, after the frames file got its final name, so a
    split is either missing, half-written (reported as such) or complete.
    """
    settings = pack_settings(fmt, quality)
    paths = packed_paths(packed_dir, split)
    signature = source_signature(videos)
    expected = {**settings, "source": signature}
    data_partial = paths.data_partial(fmt)
    data_partial.parent.mkdir(parents=True, exist_ok=True)
    start_video, frames_done, bytes_done = _resume_point(paths, fmt, expected)
    shape: list[int] | None = None
    if start_video:
        shape = json.loads(paths.progress.read_text(encoding="utf-8")).get("frame_shape")
    with data_partial.open("r+b" if start_video else "wb") as data, \
            paths.table_partial.open("r+b" if start_video else "wb") as table:
        data.truncate(bytes_done)
        table.truncate(TABLE_ROW * frames_done)
        data.seek(bytes_done)
        table.seek(TABLE_ROW * frames_done)
        for number in range(start_video, len(videos)):
            fileid, frames = videos[number]
            encoded = []
            for frame_path in frames:
                image = read_rgb(frame_path)
                if shape is None:
                    shape = list(image.shape)
                elif list(image.shape) != shape:
                    raise ValueError(
                        f"{frame_path}: frame shape {image.shape} differs from the pack's "
                        f"{tuple(shape)}; all frames of a split must be resized to one resolution"
                    )
                encoded.append(encode_frame(image, fmt, quality))
            bytes_done = append_video(data, table, encoded, bytes_done)
            frames_done += len(encoded)
            with atomic_path(paths.progress) as tmp:
                tmp.write_text(json.dumps({"expected": expected, "videos": number + 1, "frames": frames_done,
                                           "bytes": bytes_done, "frame_shape": shape}), encoding="utf-8")
            if on_video is not None:
                on_video(number + 1)
    entries, start = {}, 0
    for fileid, frames in videos:
        entries[fileid] = [start, len(frames)]
        start += len(frames)
    index = {**settings, "source": signature, "frame_shape": shape or [0, 0, 3], "num_frames": frames_done,
             "data_bytes": bytes_done, "videos": entries,
             "frames_from": {fileid: frames_record(Path(frames[0]).parent) for fileid, frames in videos if frames},
             "frames_dir": frames_folder([Path(frames[0]).parent for _, frames in videos if frames])}
    # Each video's folder under frames_dir: the feeder checks it against the info file's entry.
    index["folders"] = {fileid: os.path.relpath(Path(frames[0]).parent.resolve(), index["frames_dir"])
                        for fileid, frames in videos if frames}
    if dataset is not None:
        index["dataset"] = dataset
    return publish_pack(paths, fmt, index)


def publish_pack(paths: PackPaths, fmt: str, index: dict) -> dict:
    """Give a split whose frames are all in its partial files its final files: the frame table, the
    frames file, then the index (last, so that a split is either complete or reported half-written)."""
    rows = np.fromfile(paths.table_partial, dtype=np.int64, count=3 * index["num_frames"]).reshape(-1, 3)
    # An older pack of this split stops being valid first: a crash from here on leaves no index
    # (with the progress file: reported as half-written) rather than an index over other data.
    paths.index.unlink(missing_ok=True)
    with atomic_path(paths.table) as tmp:
        with tmp.open("wb") as handle:  # np.save on a path would append '.npy' to the temporary name
            np.save(handle, rows)
    os.replace(paths.data_partial(fmt), paths.data(fmt))
    with atomic_path(paths.index) as tmp:
        tmp.write_text(json.dumps(index), encoding="utf-8")
    paths.progress.unlink(missing_ok=True)
    paths.table_partial.unlink(missing_ok=True)
    for other in FORMATS:  # a pack in another format that this one replaces
        if other != fmt:
            paths.data(other).unlink(missing_ok=True)
    return index


# ----------------------------------------------------------------------------- reading


def _half_written(paths: PackPaths, packed_dir: Path, split: str) -> str | None:
    """A description of an interrupted pack of the split, or None."""
    try:
        progress = json.loads(paths.progress.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (f"the pack of split {split!r} in {packed_dir} is half-written ({progress.get('videos', 0)} videos, "
            f"{progress.get('frames', 0)} frames written, format {progress.get('expected', {}).get('format')}); "
            "re-run the preprocessing with --pack to finish it")


REPACK = "rebuild it: preprocessing with --pack --repack"
MAX_SIDE = 65535  # the largest JPEG side; no pack frame is larger


def _count(value: object) -> bool:
    """Whether `value` is a non-negative JSON integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_index(path: Path) -> dict:
    """A split's pack index, checked field by field; a PackError naming `path` otherwise.

    The checks bound every later read: video entries lie inside the frame table, the frame shape
    is three sides of at most MAX_SIDE (and, with the frame table, the frames' own), so that no
    crafted index makes a reader allocate more than its frames or read another video's frames.
    """
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise PackError(f"{path}: not a readable pack index ({error}); {REPACK}") from None
    if not isinstance(index, dict):
        raise PackError(f"{path}: not a pack index (a JSON {type(index).__name__}, not an object); {REPACK}")
    if index.get("version") == 1 and index.get("format") == "raw-rgb-uint8":  # the first pack layout
        index = {**index, "format": "raw", "data_bytes": None}
    elif index.get("version") != PACK_VERSION or index.get("format") not in FORMATS:
        raise PackError(f"{path}: pack version {index.get('version')} / format {index.get('format')!r} "
                        f"is not one this code reads (version {PACK_VERSION}, {', '.join(FORMATS)}); re-pack")
    shape, frames = index.get("frame_shape"), index.get("num_frames")
    if not _count(frames):
        raise PackError(f"{path}: num_frames {frames!r} is not a count of frames; {REPACK}")
    if (not isinstance(shape, list) or len(shape) != 3 or not all(_count(side) for side in shape)
            or shape[2] != 3 or max(shape[:2]) > MAX_SIDE or (frames and min(shape[:2]) == 0)):
        raise PackError(f"{path}: frame_shape {shape!r} is not [height, width, 3] with sides from 1 to "
                        f"{MAX_SIDE}; {REPACK}")
    if index["data_bytes"] is None:  # version 1 stored no byte count: raw frames of frame_shape
        index["data_bytes"] = frames * shape[0] * shape[1] * shape[2]
    if not _count(index.get("data_bytes")):
        raise PackError(f"{path}: data_bytes {index.get('data_bytes')!r} is not a count of bytes; {REPACK}")
    videos = index.get("videos")
    if not isinstance(videos, dict):
        raise PackError(f"{path}: 'videos' is not an object of video id -> [first frame, frame count]; {REPACK}")
    for fileid, entry in videos.items():
        if not (isinstance(entry, list) and len(entry) == 2 and _count(entry[0]) and _count(entry[1])
                and entry[0] + entry[1] <= frames):
            raise PackError(f"{path}: video {fileid!r} has the entry {entry!r}, not [first frame, frame count] "
                            f"with both non-negative and inside the {frames} frames of the pack; {REPACK}")
    overlap = overlapping_entries(videos)
    if overlap:
        first, second = overlap
        raise PackError(f"{path}: the entries of videos {first!r} {videos[first]} and {second!r} "
                        f"{videos[second]} overlap: one would read the other's frames; {REPACK}")
    folders = index.get("folders")
    if folders is not None and not (isinstance(folders, dict)
                                    and all(isinstance(v, str) for v in folders.values())):
        raise PackError(f"{path}: 'folders' is not an object of video id -> folder; {REPACK}")
    records = index.get("frames_from") or {}
    if (not isinstance(records, dict) or not isinstance(index.get("dataset", ""), str)
            or not isinstance(index.get("frames_dir") or "", str)
            or not all(record is None or (isinstance(record, list) and len(record) == 3 and _count(record[0])
                                          and _count(record[1]) and isinstance(record[2], str))
                       for record in records.values())):
        raise PackError(f"{path}: 'frames_from', 'frames_dir' or 'dataset' is malformed; {REPACK}")
    return index


def overlapping_entries(videos: Mapping[str, list]) -> tuple[str, str] | None:
    """Two videos whose [first frame, frame count] entries share a frame (a repeat included), else None."""
    spans = sorted((start, count, fileid) for fileid, (start, count) in videos.items() if count)
    for (start, count, fileid), (next_start, _, next_id) in zip(spans, spans[1:]):
        if next_start < start + count:
            return fileid, next_id
    return None


def read_table(path: Path, index: Mapping, index_name: str) -> np.ndarray:
    """The frame table of an encoded pack (memory-mapped), checked against its index.

    Plain int64 only (np.load refuses pickled objects); every frame's bytes lie inside the
    frames file, and the last frame ends where the index says the file does.
    """
    try:
        table = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        table = None
    except (ValueError, EOFError, OSError) as error:
        raise PackError(f"{path}: not a frame table of plain integers ({error}); {REPACK}") from None
    frames, size = index["num_frames"], index["data_bytes"]
    if table is None or table.dtype != np.int64 or table.shape != (frames, 3):
        raise PackError(f"{path} is missing or does not match {index_name} ({frames} frames, {size} bytes); "
                        f"re-pack")
    if frames:
        rows = np.asarray(table[:, :2])
        ends = rows[:, 0] + rows[:, 1]
        if rows.min() < 0 or rows.max() > size or ends.max() > size or int(ends[-1]) != size:
            raise PackError(f"{path}: frame offsets or lengths outside the {size} bytes of the frames file "
                            f"recorded in {index_name}; {REPACK}")
        # Frames follow one another: a repeated or reordered row would give a video another's frame.
        bad = np.flatnonzero((rows[:, 1] < 1) | np.r_[False, rows[1:, 0] < ends[:-1]])
        if len(bad):
            row = int(bad[0])
            owner = next((f"video {fileid!r}, frame {row - start}" for fileid, (start, count)
                          in index["videos"].items() if start <= row < start + count), "no video")
            raise PackError(f"{path}: row {row} ({owner}: offset {int(rows[row, 0])}, length "
                            f"{int(rows[row, 1])}) is empty or does not follow the row before it: the "
                            f"frame table is not strictly increasing; {REPACK}")
    return table


def frame_header_shape(data: np.ndarray, fmt: str) -> tuple[int, int, int] | None:
    """(H, W, 3) that an encoded frame's header states (without decoding it), or None if unreadable."""
    if fmt == "jpeg":
        import simplejpeg

        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError:
            return None
        return int(height), int(width), 3
    head = bytes(data[:24])
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big"), 3


@dataclass
class PackedFrames:
    """Read-only view of one split's pack; `read(fileid, selection)` gives the frames a clip needs."""

    data_path: Path
    index: dict
    table_path: Path | None = None

    @classmethod
    def open(cls, packed_dir: str | Path, split: str, dataset: str | None = None) -> "PackedFrames":
        """Open a split's pack, checking that it is complete, that its files agree and, given
        `dataset`, that it was made from that dataset's frames."""
        packed_dir = Path(packed_dir)
        paths = packed_paths(packed_dir, split)
        if not paths.index.is_file():
            half = _half_written(paths, packed_dir, split)
            if half:
                raise PackError(half)
            raise MissingFileError(
                f"packed cache for split {split!r} not found in {packed_dir} (need {paths.index.name}); "
                "run preprocessing with --pack"
            )
        index = read_index(paths.index)
        if dataset is not None and index.get("dataset") not in (None, dataset):
            raise PackError(f"{paths.index}: a pack of {index['dataset']} frames, but the run is for {dataset} "
                            f"(--dataset / key 'dataset'); point feeder_args.packed_dir at the {dataset} pack "
                            f"or re-run the {dataset} preprocessing with --pack")
        fmt = index["format"]
        data_path = paths.data(fmt)
        if not data_path.is_file():
            raise PackError(f"{paths.index} describes a {fmt} pack but {data_path.name} is missing; re-pack")
        if data_path.stat().st_size != index["data_bytes"]:
            raise PackError(f"{data_path}: size {data_path.stat().st_size} != {index['data_bytes']} bytes "
                            f"recorded in {paths.index.name}: the files do not belong together; re-pack")
        if fmt == "raw":
            height, width, channels = index["frame_shape"]
            if index["data_bytes"] != index["num_frames"] * height * width * channels:
                raise PackError(f"{paths.index}: {index['num_frames']} frames of {index['frame_shape']} do not "
                                f"make {index['data_bytes']} bytes; re-pack")
            return cls(data_path=data_path, index=index)
        table = read_table(paths.table, index, paths.index.name)
        pack = cls(data_path=data_path, index=index, table_path=paths.table)
        if len(table):  # the frame shape the index states must be the frames' own, before any allocation
            begin, length, _ = (int(v) for v in table[0])
            stated = frame_header_shape(pack._bytes()[begin:begin + length], fmt)
            if stated is None:
                raise PackError(f"{data_path}: its first frame is not a readable {fmt} frame; {REPACK}")
            if stated != tuple(index["frame_shape"]):
                raise PackError(f"{paths.index}: frame_shape {index['frame_shape']} but the first frame of "
                                f"{data_path.name} is {list(stated)}: the files do not belong together; {REPACK}")
        return pack

    def __post_init__(self) -> None:
        # Opened lazily so that a DataLoader worker maps the files itself instead of pickling them.
        self._array: np.ndarray | None = None
        self._table: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {"data_path": self.data_path, "index": self.index, "table_path": self.table_path}

    def __setstate__(self, state: dict) -> None:
        self.data_path, self.index = state["data_path"], state["index"]
        self.table_path = state.get("table_path")
        self._array = self._table = None

    @property
    def format(self) -> str:
        """'raw', 'jpeg' or 'png'."""
        return self.index["format"]

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of every frame."""
        return tuple(self.index["frame_shape"])

    def _bytes(self) -> np.ndarray:
        """The whole frames file as a uint8 memmap (a plain ndarray view: np.memmap indexing is slower)."""
        if self._array is None:
            size = self.index["data_bytes"]
            self._array = (np.memmap(self.data_path, dtype=np.uint8, mode="r", shape=(size,)).view(np.ndarray)
                           if size else np.zeros(0, dtype=np.uint8))
        return self._array

    def __contains__(self, fileid: str) -> bool:
        return fileid in self.index["videos"]

    def _entry(self, fileid: str) -> tuple[int, int]:
        """(first frame, frame count) of a video."""
        try:
            start, count = self.index["videos"][fileid]
        except KeyError:
            raise KeyError(f"video {fileid!r} is not in the pack {self.data_path}; re-run --pack") from None
        return int(start), int(count)

    def num_frames(self, fileid: str) -> int:
        """Frames of one video."""
        return self._entry(fileid)[1]

    def video(self, fileid: str) -> np.ndarray:
        """(T, H, W, 3) uint8 view of one video of a raw pack (no copy)."""
        if self.format != "raw":
            raise ValueError(f"{self.data_path} is a {self.format} pack: use read(), which decodes")
        start, count = self._entry(fileid)
        return self._bytes().reshape(-1, *self.frame_shape)[start:start + count]

    def read(self, fileid: str, selection: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(frames, index) with `frames[index]` the clip of frames `selection` of video `fileid`.

        Raw packs give a view of the whole video (the transform copies only what it keeps);
        encoded packs decode each distinct selected frame once.
        """
        if self.format == "raw":
            return self.video(fileid), np.asarray(selection)
        start, count = self._entry(fileid)
        unique, inverse = np.unique(np.asarray(selection), return_inverse=True)
        if self._table is None:
            self._table = np.load(self.table_path, mmap_mode="r")
        data = self._bytes()
        frames = np.empty((len(unique), *self.frame_shape), dtype=np.uint8)
        for slot, frame in enumerate(unique.tolist()):
            if not 0 <= frame < count:
                raise IndexError(f"frame {frame} of video {fileid!r}, which has {count}")
            begin, length, crc = (int(v) for v in self._table[start + frame])
            encoded = data[begin:begin + length]
            if zlib.crc32(encoded) != crc:
                raise PackError(self._corrupt(fileid, frame, start, "its bytes do not match their CRC-32"))
            stated = frame_header_shape(encoded, self.format)
            if stated is not None and stated != self.frame_shape:  # refused before the decoder allocates
                raise PackError(self._corrupt(fileid, frame, start, f"its header states {stated}"))
            try:
                image = decode_frame(encoded, self.format)
            except ValueError as error:
                raise PackError(self._corrupt(fileid, frame, start, str(error))) from None
            if image.shape != self.frame_shape:
                raise PackError(self._corrupt(fileid, frame, start, f"decodes to {image.shape}"))
            frames[slot] = image
        return frames, inverse

    def _corrupt(self, fileid: str, frame: int, start: int, why: str) -> str:
        """The report of an entry that does not decode."""
        return (f"{self.data_path}: frame {frame} of video {fileid!r} (pack entry {start + frame}) is corrupt "
                f"({why}); rebuild the pack: preprocessing with --pack --repack")

