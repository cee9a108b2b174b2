"""`--pack`: the size estimate, the free-space check and the writing of every split's frame pack."""
from __future__ import annotations

import json
import os
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dataset.images import read_rgb
from dataset.layout import frames_root, read_manifest
from dataset.packed import (FORMATS, TABLE_ROW, encode_frame, pack_is_current, pack_settings, packed_paths,
                            source_signature, write_packed)
from dataset.registry import DatasetSpec
from preprocess.common import InfoDict, PreprocessError, info_entries, list_frames
from utils.errors import is_out_of_space

SAMPLE_FRAMES = 24  # per split, spread over its videos: enough for a +-10 % estimate of the mean size
MARGIN = 1.05       # file-system overhead and the index on top of the frame bytes

Videos = list[tuple[str, list[str]]]  # (fileid, frame paths): str, a third lighter than Path a frame


@dataclass(frozen=True)
class SizeEstimate:
    """Frames of a split and the estimated bytes of its pack in every format."""

    split: str
    frames: int
    bytes: dict[str, int]


def split_videos(spec: DatasetSpec, root: Path, info: InfoDict, res_tag: str) -> Videos:
    """(fileid, frame paths) of every video of a split of dataset `spec`, from its finished resized
    frame folders."""
    src_root = frames_root(spec, root, res_tag)
    videos = []
    for entry in info_entries(info):
        directory, pattern = posixpath.split(entry["folder"])
        names = list_frames(src_root / directory, pattern)
        if not names or read_manifest(src_root / directory) is None:
            raise PreprocessError(
                f"resized frames in {src_root / directory} are missing or unfinished; "
                "run with --process-image before (or together with) --pack"
            )
        folder = str(src_root / directory)
        videos.append((entry["fileid"], [os.path.join(folder, name) for name in names]))
    return videos


def estimate_sizes(split: str, videos: Videos, quality: int) -> SizeEstimate:
    """Bytes of the split's pack in each format: raw exactly, encoded ones from sampled frames."""
    paths = [path for _, frames in videos for path in frames]
    if not paths:
        return SizeEstimate(split, 0, {fmt: 0 for fmt in FORMATS})
    picks = np.unique(np.linspace(0, len(paths) - 1, min(SAMPLE_FRAMES, len(paths))).round().astype(int))
    sample = [read_rgb(paths[i]) for i in picks]
    sizes = {}
    for fmt in FORMATS:
        mean = np.mean([len(encode_frame(frame, fmt, quality)) for frame in sample])
        sizes[fmt] = int(len(paths) * (mean + TABLE_ROW) * MARGIN)
    return SizeEstimate(split, len(paths), sizes)


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that will hold `path` (its nearest existing folder)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def human(size: float) -> str:
    """1234567 -> '1.2 MB' (powers of 1000, as disk sizes are sold)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def estimate_table(estimates: Sequence[SizeEstimate], quality: int) -> list[str]:
    """The lines printed before packing: frames and estimated pack size per split and format."""
    names = {"jpeg": f"jpeg q{quality}", "png": "png", "raw": "raw"}
    lines = [f"{'split':8} {'frames':>10} " + " ".join(f"{names[f]:>10}" for f in FORMATS)]
    for e in estimates:
        lines.append(f"{e.split:8} {e.frames:>10} " + " ".join(f"{human(e.bytes[f]):>10}" for f in FORMATS))
    total = {f: sum(e.bytes[f] for e in estimates) for f in FORMATS}
    lines.append(f"{'total':8} {sum(e.frames for e in estimates):>10} "
                 + " ".join(f"{human(total[f]):>10}" for f in FORMATS))
    return lines


def check_space(needed: dict[str, int], fmt: str, free: int, where: Path) -> None:
    """Refuse a pack that will not fit, naming the formats that would."""
    if needed[fmt] <= free:
        return
    fitting = [f for f in FORMATS if needed[f] <= free]
    hint = (f"--pack-format {' or '.join(fitting)} would fit ({', '.join(f'{f}: {human(needed[f])}' for f in fitting)})"
            if fitting else "no pack format fits: free space or choose another --output-dir")
    raise PreprocessError(
        f"the {fmt} pack needs about {human(needed[fmt])} but only {human(free)} are free on the disk of {where}; "
        f"{hint}"
    )


def out_of_space(packed_dir: Path, split: str, fmt: str, left: Sequence[SizeEstimate]) -> str:
    """The report of a disk that filled up while the pack of `split` was written (`left`: it and the
    splits after it)."""
    progress = packed_paths(packed_dir, split).progress
    try:  # what the interrupted split already holds: a rerun continues from there
        written = int(json.loads(progress.read_text(encoding="utf-8"))["bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        written = 0
    needed = max(sum(e.bytes[fmt] for e in left) - written, 0)
    return (f"no space left on the disk of {packed_dir} while writing the {fmt} pack of the {split} split: "
            f"about {human(needed)} ({needed} bytes) more are needed, {human(free_bytes(packed_dir))} are free; "
            f"free that much and rerun (the finished videos are kept), or choose another --output-dir")


def pack_splits(spec: DatasetSpec, root: Path, infos: dict[str, InfoDict], res_tag: str, out_dir: Path,
                fmt: str, quality: int, repack: bool = False) -> Path:
    """Estimate, check the space for, and write the pack of every split; returns the pack folder.

    Splits whose pack is current (same settings, same frames) are kept unless `repack`.
    """
    packed_dir = out_dir / f"packed-{res_tag}"
    settings = pack_settings(fmt, quality)
    videos = {split: split_videos(spec, root, info, res_tag) for split, info in infos.items()}
    estimates = [estimate_sizes(split, v, quality) for split, v in videos.items()]
    print(f"pack estimate for {res_tag} frames ({SAMPLE_FRAMES} sampled frames per split):")
    for line in estimate_table(estimates, quality):
        print(f"  {line}")
    todo = [split for split, v in videos.items()
            if repack or not pack_is_current(packed_dir, split, settings, source_signature(v), spec.name)]
    needed = {f: sum(e.bytes[f] for e in estimates if e.split in todo) for f in FORMATS}
    check_space(needed, fmt, free_bytes(packed_dir), packed_dir)
    for split, split_list in videos.items():
        if split not in todo:
            print(f"pack {split}: up to date ({fmt}) in {packed_dir}")
            continue
        if repack:  # neither the finished pack nor an interrupted one is reused
            paths = packed_paths(packed_dir, split)
            paths.index.unlink(missing_ok=True)
            paths.progress.unlink(missing_ok=True)
        try:
            index = write_packed(packed_dir, split, split_list, fmt, quality, dataset=spec.name)
        except OSError as error:
            if not is_out_of_space(error):
                raise
            left = [e for e in estimates if e.split in todo[todo.index(split):]]
            raise PreprocessError(out_of_space(packed_dir, split, fmt, left)) from None
        print(f"packed {split}: {len(split_list)} videos, {index['num_frames']} frames, "
              f"{human(index['data_bytes'])} ({fmt}) -> {packed_dir}")
    return packed_dir
