"""On-disk layout of the three datasets: where raw and resized frames live, shared by preprocessing and feeders."""
from __future__ import annotations

from pathlib import Path

DATASETS = ("phoenix2014", "phoenix2014-T", "CSL-Daily")
RAW_FRAME_TAG = {"phoenix2014": "210x260px", "phoenix2014-T": "210x260px", "CSL-Daily": "512x512"}


def check_dataset(dataset: str) -> str:
    """Return `dataset` if it is one of the supported names, else raise listing them."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    return dataset


def frames_root(dataset: str, dataset_root: str | Path, res_tag: str) -> Path:
    """Folder holding all frames of `dataset` at resolution `res_tag` ('256x256px', '210x260px', ...).

    PHOENIX: `<root>/features/fullFrame-<WxH>px`; CSL-Daily: `<root>/sentence/frames_<WxH>`
    (the download's own naming, no 'px').
    """
    check_dataset(dataset)
    root = Path(dataset_root)
    if dataset.startswith("phoenix"):
        tag = res_tag if res_tag.endswith("px") else f"{res_tag}px"
        return root / "features" / f"fullFrame-{tag}"
    return root / "sentence" / f"frames_{res_tag.removesuffix('px')}"


def raw_frames_root(dataset: str, dataset_root: str | Path) -> Path:
    """Folder of the frames as the download ships them."""
    return frames_root(dataset, dataset_root, RAW_FRAME_TAG[check_dataset(dataset)])
