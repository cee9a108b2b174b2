"""A pack past 4 GiB, written by the real `--pack` code: byte offsets, sizes and the CRC table hold past
32 bits, the size estimate and the free-space check hold at that size, and the last video reads back
bit-exactly. Runs wherever 5 GiB are free (skipped with the reason otherwise) and deletes its files.

The bulk of the pack is one 2048x2048 noise frame listed many times (symlinks), so that PNG cannot
shrink it; decoding and encoding that one file again for every listing would only cost time, so both
are served from a cache after their first real call. Everything else (offsets, CRCs, the frame table,
fsyncs, the index, the estimate, the space check, reading back) is the code `--pack` runs.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import dataset.packed as packed_module
import preprocess.pack as pack_module
from dataset.images import read_rgb
from dataset.layout import MANIFEST, frames_root
from dataset.registry import dataset_spec
from dataset.packed import PackedFrames, encode_frame, packed_paths
from preprocess.common import PreprocessError, make_info_dict
from tests.test_registry import _write_png

FOUR_GIB = 4 * 2**30
NEEDED_FREE = 5 * 2**30  # the pack (about 4.4 GB) plus room for the file system
SIDE = 2048  # PNG of a 2048x2048 noise frame: about 12.6 MB
RES = f"{SIDE}x{SIDE}px"
BULK_VIDEOS, BULK_FRAMES = 8, 43  # 344 frames of about 12.6 MB: about 4.33 GB, past 4 GiB
LAST_FRAMES = 3


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)


def _video_dir(root: Path, fileid: str) -> Path:
    folder = frames_root(dataset_spec("phoenix2014"), root, RES) / "train" / fileid
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text("{}", encoding="utf-8")  # marks the resized folder finished
    return folder


def _make_split(root: Path) -> dict:
    """The info dict of one split: BULK_VIDEOS videos of the same frame, then a last video of distinct frames."""
    bulk = root / "bulk.png"
    _write_png(bulk, _noise(0))
    entries = []
    for number in range(BULK_VIDEOS):
        folder = _video_dir(root, f"bulk{number}")
        for frame in range(BULK_FRAMES):
            (folder / f"{frame:04d}.png").symlink_to(bulk)
        entries.append({"fileid": f"bulk{number}", "folder": f"train/bulk{number}/*.png"})
    folder = _video_dir(root, "last")
    for frame in range(LAST_FRAMES):
        _write_png(folder / f"{frame:04d}.png", _noise(1 + frame))
    entries.append({"fileid": "last", "folder": "train/last/*.png"})
    return make_info_dict(str(root), entries)


def _cache_repeated_codec_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode each source file once and encode each decoded frame once per format (see the docstring)."""
    images: dict[str, np.ndarray] = {}
    encoded: dict[tuple[int, str, int], bytes] = {}

    def cached_read(path) -> np.ndarray:
        key = os.path.realpath(path)
        if key not in images:
            images[key] = read_rgb(path)
        return images[key]

    def cached_encode(rgb: np.ndarray, fmt: str, quality: int = 90) -> bytes:
        key = (id(rgb), fmt, int(quality))  # the cached arrays stay alive, so ids are not reused
        if key not in encoded:
            encoded[key] = encode_frame(rgb, fmt, quality)
        return encoded[key]

    for module in (packed_module, pack_module):
        monkeypatch.setattr(module, "read_rgb", cached_read)
        monkeypatch.setattr(module, "encode_frame", cached_encode)


def test_a_pack_past_4_gib_keeps_its_offsets_and_reads_its_last_video_exactly(tmp_path, monkeypatch):
    free = shutil.disk_usage(tmp_path).free
    if free < NEEDED_FREE:
        pytest.skip(f"needs {NEEDED_FREE / 2**30:.0f} GiB free on the disk of {tmp_path} for a pack past "
                    f"4 GiB; {free / 2**30:.1f} GiB are free")
    root, out = tmp_path / "root", tmp_path / "out"
    try:
        infos = {"train": _make_split(root)}
        _cache_repeated_codec_calls(monkeypatch)
        started = time.perf_counter()

        # The free-space check at this size: refused before anything is written, naming the size.
        monkeypatch.setattr(pack_module, "free_bytes", lambda path: 2**31)
        with pytest.raises(PreprocessError, match=r"the png pack needs about 4\.[3-6] GB but only 2\.1 GB are free"):
            pack_module.pack_splits(dataset_spec("phoenix2014"), root, infos, RES, out, "png", 90)
        monkeypatch.setattr(pack_module, "free_bytes", lambda path: free)
        assert not packed_paths(out / f"packed-{RES}", "train").index.exists()

        packed_dir = pack_module.pack_splits(dataset_spec("phoenix2014"), root, infos, RES, out, "png", 90)
        written = time.perf_counter() - started
        pack = PackedFrames.open(packed_dir, "train")
        data_bytes = pack.index["data_bytes"]
        assert data_bytes > FOUR_GIB and pack.data_path.stat().st_size == data_bytes
        assert pack.index["num_frames"] == BULK_VIDEOS * BULK_FRAMES + LAST_FRAMES

        # The estimate printed before packing holds at this size (within its stated +-10 %).
        videos = pack_module.split_videos(dataset_spec("phoenix2014"), root, infos["train"], RES)
        estimate = pack_module.estimate_sizes("train", videos, 90).bytes["png"]
        assert data_bytes <= estimate <= 1.1 * data_bytes

        # The frame table: int64 offsets past 2**32, contiguous, CRC-32s as unsigned 32-bit values.
        table = np.load(packed_paths(packed_dir, "train").table, mmap_mode="r")
        assert table.dtype == np.int64 and table.shape == (pack.index["num_frames"], 3)
        assert np.array_equal(table[1:, 0], table[:-1, 0] + table[:-1, 1])
        assert int(table[-1, 0] + table[-1, 1]) == data_bytes
        start, count = pack.index["videos"]["last"]
        assert count == LAST_FRAMES and int(table[start, 0]) > FOUR_GIB
        assert 0 <= int(table[:, 2].min()) and int(table[:, 2].max()) < 2**32

        # The last video, past 4 GiB, bit-exactly; and the bulk frame whose bytes straddle 4 GiB.
        frames, where = pack.read("last", np.array([2, 0, 1, 2]))
        sources = sorted(frames_root(dataset_spec("phoenix2014"), root, RES).joinpath("train", "last").glob("*.png"))
        for got, source in zip(frames[where], [sources[i] for i in (2, 0, 1, 2)]):
            assert np.array_equal(got, read_rgb(source))
        straddling = int(np.flatnonzero((table[:, 0] < FOUR_GIB) & (table[:, 0] + table[:, 1] > FOUR_GIB))[0])
        video, frame = divmod(straddling, BULK_FRAMES)
        got, where = pack.read(f"bulk{video}", np.array([frame]))
        assert np.array_equal(got[where][0], _noise(0))
        print(f"pack of {data_bytes} bytes ({data_bytes / 2**30:.2f} GiB) written in {written:.1f} s, "
              f"checked in {time.perf_counter() - started - written:.1f} s")
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
