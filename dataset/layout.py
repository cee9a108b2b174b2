"""Where a dataset's frames live on disk (raw and resized), resolution tags, and the manifest that
marks a resized video folder finished; shared by preprocessing, the feeders and inference."""
from __future__ import annotations

import json
import re
from pathlib import Path

from dataset.registry import DatasetSpec
from utils.errors import ConfigError

MANIFEST = ".complete.json"  # its presence marks a finished video (name kept from the first version)


MAX_FRAME_SIDE = 8192  # pixels: 8K video; a larger frame (99999x99999 is 30 GB) is a typo


def parse_resolution(res: str) -> tuple[int, int]:
    """'256x256px' -> (width, height), each side 1 to MAX_FRAME_SIDE."""
    match = re.fullmatch(r"\s*(\d+)x(\d+)(px)?\s*", res)
    if match is None or not all(0 < int(match.group(i)) <= MAX_FRAME_SIDE for i in (1, 2)):
        raise ConfigError(f"bad resolution {res!r}; expected WIDTHxHEIGHTpx like '256x256px', each "
                          f"side from 1 to {MAX_FRAME_SIDE} pixels")
    return int(match.group(1)), int(match.group(2))


def resolution_tag(res: str) -> str:
    """Canonical folder tag of a resolution: '256x256' -> '256x256px'."""
    width, height = parse_resolution(res)
    return f"{width}x{height}px"


def frames_root(spec: DatasetSpec, dataset_root: str | Path, res_tag: str) -> Path:
    """Folder holding all frames of dataset `spec` at resolution `res_tag` ('256x256px', '210x260px', ...).

    The registry's frames_dir: PHOENIX and CSL `<root>/features/fullFrame-<W>x<H>px`, CSL-Daily
    `<root>/sentence/frames_<W>x<H>` (the download's own naming, no 'px').
    """
    width, height = parse_resolution(res_tag)
    return Path(dataset_root) / spec.frames_dir.format(width=width, height=height)


def raw_frames_root(spec: DatasetSpec, dataset_root: str | Path) -> Path:
    """Folder of the frames as the download ships them (CSL: the root itself)."""
    return Path(dataset_root) / spec.raw_frames_subdir


def resized_resolutions(spec: DatasetSpec, dataset_root: str | Path) -> list[str]:
    """Tags ('256x256px', ...) of the resized frame folders present under `dataset_root` (raw frames excluded)."""
    raw = raw_frames_root(spec, dataset_root)
    frames_dir = Path(spec.frames_dir)
    parent = Path(dataset_root) / frames_dir.parent
    if not parent.is_dir():
        return []
    pattern = re.escape(frames_dir.name)
    pattern = pattern.replace(r"\{width\}", r"(\d+)").replace(r"\{height\}", r"(\d+)")
    tags = []
    for folder in sorted(parent.iterdir()):
        match = re.fullmatch(pattern, folder.name)
        if folder.is_dir() and folder != raw and match:
            tags.append(f"{match.group(1)}x{match.group(2)}px")
    return tags


def root_of_raw_frames(spec: DatasetSpec, raw_frames: str | Path) -> Path | None:
    """The dataset root whose raw frame folder is `raw_frames` (an info file's 'prefix'), else None."""
    candidate = Path(raw_frames)
    for _ in Path(spec.raw_frames_subdir).parts:
        candidate = candidate.parent
    return candidate if raw_frames_root(spec, candidate) == Path(raw_frames) else None


def read_manifest(video_dir: str | Path) -> dict | None:
    """The manifest of a finished resized video folder, or None when the video is not finished."""
    try:
        record = json.loads((Path(video_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
