"""Packed frame cache: one raw uint8 file per split plus a JSON index, read with np.memmap.

Decoding PNGs frame by frame dominates data loading in this model family; the packed file holds
every frame already decoded (RGB, H x W x 3, uint8), so reading a clip is a memory copy of only
the frames and the crop window the augmentation keeps.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from utils.atomic import atomic_path

PACK_VERSION = 1


def packed_paths(packed_dir: str | Path, split: str) -> tuple[Path, Path]:
    """(data file, index file) of one split's pack."""
    packed_dir = Path(packed_dir)
    return packed_dir / f"{split}.u8", packed_dir / f"{split}.json"


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as an RGB uint8 array, raising a clear error when unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {path} (missing or corrupt); re-run preprocessing")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_packed(
    packed_dir: str | Path, split: str, videos: Iterable[tuple[str, Sequence[str | Path]]]
) -> dict:
    """Pack `videos` (fileid, sorted frame paths) into `<packed_dir>/<split>.u8` + `.json`; returns the index.

    Written to temporary names and renamed at the end, so an interrupted run leaves no usable-looking
    half pack.
    """
    data_path, index_path = packed_paths(packed_dir, split)
    entries: dict[str, list[int]] = {}
    shape: list[int] | None = None
    offset = 0
    # Contexts exit inner first: the data file is in place before the index that describes it.
    with atomic_path(index_path) as tmp_index, atomic_path(data_path) as tmp_data:
        with tmp_data.open("wb") as handle:
            for fileid, frames in videos:
                start = offset
                for frame_path in frames:
                    image = read_rgb(frame_path)
                    if shape is None:
                        shape = list(image.shape)
                    elif list(image.shape) != shape:
                        raise ValueError(
                            f"{frame_path}: frame shape {image.shape} differs from the pack's "
                            f"{tuple(shape)}; all frames of a split must be resized to one resolution"
                        )
                    handle.write(np.ascontiguousarray(image).tobytes())
                    offset += 1
                entries[fileid] = [start, offset - start]
        index = {"version": PACK_VERSION, "format": "raw-rgb-uint8", "frame_shape": shape or [0, 0, 3],
                 "num_frames": offset, "videos": entries}
        tmp_index.write_text(json.dumps(index), encoding="utf-8")
    return index


@dataclass
class PackedFrames:
    """Read-only view of one split's pack; `video(fileid)` is a (T, H, W, 3) uint8 memmap slice."""

    data_path: Path
    index: dict

    @classmethod
    def open(cls, packed_dir: str | Path, split: str) -> "PackedFrames":
        """Open a split's pack, validating that both files exist and agree."""
        data_path, index_path = packed_paths(packed_dir, split)
        if not index_path.is_file() or not data_path.is_file():
            raise FileNotFoundError(
                f"packed cache for split {split!r} not found in {packed_dir} "
                f"(need {data_path.name} and {index_path.name}); run preprocessing with --pack"
            )
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("version") != PACK_VERSION:
            raise ValueError(f"{index_path}: pack version {index.get('version')} != {PACK_VERSION}; re-pack")
        height, width, channels = index["frame_shape"]
        expected = index["num_frames"] * height * width * channels
        if data_path.stat().st_size != expected:
            raise ValueError(f"{data_path}: size {data_path.stat().st_size} != {expected} bytes; re-pack")
        return cls(data_path=data_path, index=index)

    def __post_init__(self) -> None:
        # Opened lazily so that a DataLoader worker maps the file itself instead of pickling it.
        self._array: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {"data_path": self.data_path, "index": self.index}

    def __setstate__(self, state: dict) -> None:
        self.data_path, self.index, self._array = state["data_path"], state["index"], None

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of every frame."""
        return tuple(self.index["frame_shape"])

    def _frames(self) -> np.ndarray:
        """The whole split as an (N, H, W, 3) memmap."""
        if self._array is None:
            n = self.index["num_frames"]
            # A plain ndarray view of the map: np.memmap's own __getitem__ makes fancy indexing ~4x slower.
            self._array = (
                np.memmap(self.data_path, dtype=np.uint8, mode="r", shape=(n, *self.frame_shape)).view(np.ndarray)
                if n else np.zeros((0, *self.frame_shape), dtype=np.uint8)
            )
        return self._array

    def __contains__(self, fileid: str) -> bool:
        return fileid in self.index["videos"]

    def video(self, fileid: str) -> np.ndarray:
        """(T, H, W, 3) uint8 view of one video (no copy)."""
        try:
            start, count = self.index["videos"][fileid]
        except KeyError:
            raise KeyError(f"video {fileid!r} is not in the pack {self.data_path}; re-run --pack") from None
        return self._frames()[start:start + count]
