"""Recovery hints for resized frames a feeder cannot use: find out which case it is and name the fix that works.

Missing frames have several causes that need different fixes: a wrong `dataset_info.dataset_root`,
frames resized to another resolution than `feeder_args.frames_res`, a download never resized, or
one video missing, stale or damaged. Each message names the key to set or the exact command to run.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dataset.layout import frames_root, raw_frames_root, resized_resolutions, root_of_raw_frames
from dataset.registry import DatasetSpec
from utils.errors import MissingFileError
from utils.npy import load_npy_object


class FramesError(MissingFileError):
    """A video's resized frames are missing, stale or unreadable; the message says what to do."""


@dataclass(frozen=True)
class FrameSource:
    """Where a feeder reads resized frames from, as configured."""

    spec: DatasetSpec  # the dataset's registry entry
    dataset_root: Path  # dataset_info.dataset_root
    frames_res: str  # feeder_args.frames_res
    info_path: Path  # the split's <split>_info.npy (dataset_info.info_dir or the dict_path folder)
    frames_dir: Path | None = None  # dataset_info.frames_dir when set explicitly
    input_size: int = 224  # feeder_args.input_size, the crop

    @property
    def resized(self) -> Path:
        """The folder the preprocess script writes for this root and resolution."""
        return frames_root(self.spec, self.dataset_root, self.frames_res)


def preprocess_command(source: FrameSource, redo: Sequence[str] = ()) -> str:
    """The preprocessing command (run from the repository root) that writes the frames `source` reads."""
    argv = ["python", source.spec.preprocess_script, "--dataset-root", str(source.dataset_root),
            "--output-dir", str(source.info_path.parent), "--output-res", source.frames_res, "--process-image"]
    if redo:
        argv += ["--redo", *redo]
    return shlex.join(argv)


def info_prefix(info_path: Path) -> str | None:
    """The raw frame folder an info file records as 'prefix' (where preprocessing read the download)."""
    try:
        info = load_npy_object(info_path)
    except (OSError, ValueError, AttributeError):
        return None
    return str(info["prefix"]) if isinstance(info, dict) and info.get("prefix") else None


def _size(tag: str) -> tuple[int, int]:
    """'256x192px' -> (256, 192)."""
    width, height = tag.removesuffix("px").split("x")
    return int(width), int(height)


def _other_resolution_hint(source: FrameSource, others: list[str]) -> str:
    """Frames exist, at resolutions other than frames_res: resize to it, or use one that fits the crop."""
    message = (f"no frames resized to {source.frames_res} (feeder_args.frames_res) in {source.dataset_root}: "
               f"{source.resized} does not exist, but frames resized to {', '.join(others)} do. To resize to "
               f"{source.frames_res}, run {preprocess_command(source)}")
    fitting = [tag for tag in others if min(_size(tag)) >= source.input_size]
    if fitting:
        tag = fitting[0]
        share = round(100 * source.input_size / min(_size(tag)))
        message += (f"; or use those frames: --set feeder_args.frames_res={tag} (the {source.input_size} px "
                    f"crop, feeder_args.input_size, then spans {share} % of their shorter side)")
    return message


def _wrong_root_hint(source: FrameSource) -> str:
    """The root holds no download: point at the one the info files were made from, when it exists."""
    raw = raw_frames_root(source.spec, source.dataset_root)
    recorded = info_prefix(source.info_path)
    made_from = root_of_raw_frames(source.spec, recorded) if recorded else None
    problem = f"dataset_info.dataset_root is {source.dataset_root}, which holds no {source.spec.name} frames " \
              f"({raw} does not exist)"
    if made_from is not None and raw_frames_root(source.spec, made_from).is_dir():
        return (f"{problem}; the info files in {source.info_path.parent} were made from {made_from}: set "
                f"dataset_info.dataset_root: {made_from} (--set dataset_info.dataset_root={made_from})")
    return (f"{problem}: set dataset_info.dataset_root to the folder given to the preprocess script as "
            f"--dataset-root (its default: {source.spec.default_root})")


def missing_frames_hint(source: FrameSource, fileid: str, folder: str) -> str:
    """Why video `fileid` (info folder glob `folder`) has no frames, and the fix."""
    if source.frames_dir is not None:
        state = "does not exist" if not source.frames_dir.is_dir() else f"holds no frames for {folder}"
        return (f"no frames for video {fileid!r}: dataset_info.frames_dir {source.frames_dir} {state}; set it to "
                f"a folder of resized frames laid out as the info files name them, or leave it unset to "
                f"read {source.resized}")
    if not source.resized.is_dir():
        if not raw_frames_root(source.spec, source.dataset_root).is_dir():
            return _wrong_root_hint(source)
        others = resized_resolutions(source.spec, source.dataset_root)
        if others:
            return _other_resolution_hint(source, others)
        return (f"the frames of {source.dataset_root} were never resized to {source.frames_res} "
                f"({source.resized} does not exist): run {preprocess_command(source)}")
    return (f"no resized frames for video {fileid!r} at {source.resized / folder} (resizing unfinished or "
            f"deleted): run {preprocess_command(source, [fileid])}")


def damaged_frames_hint(source: FrameSource, fileid: str, problem: str) -> str:
    """`problem` with video `fileid`'s resized frames (stale count, undecodable file), and the fix."""
    if source.frames_dir is not None:
        return (f"{problem}; these frames come from dataset_info.frames_dir {source.frames_dir}: recreate them "
                f"there, or leave frames_dir unset and run {preprocess_command(source, [fileid])}")
    return f"{problem}: run {preprocess_command(source, [fileid])}"
