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


# The script that prepares each dataset (run from the repository root), named in recovery hints.
PREPROCESS_SCRIPTS = {"phoenix2014": "preprocess/dataset_preprocess.py",
                      "phoenix2014-T": "preprocess/dataset_preprocess-T.py",
                      "CSL-Daily": "preprocess/dataset_preprocess-CSL-Daily.py"}
# Default download locations, relative to the repository root: the original README's `ln -s` targets.
DEFAULT_ROOTS = {"phoenix2014": "dataset/phoenix2014/phoenix-2014-multisigner",
                 "phoenix2014-T": "dataset/phoenix2014-T",
                 "CSL-Daily": "dataset/CSL-Daily"}


def resized_resolutions(dataset: str, dataset_root: str | Path) -> list[str]:
    """Tags ('256x256px', ...) of the resized frame folders present under `dataset_root` (raw frames excluded)."""
    raw = raw_frames_root(dataset, dataset_root)
    if not raw.parent.is_dir():
        return []
    prefix = "fullFrame-" if dataset.startswith("phoenix") else "frames_"
    tags = []
    for folder in sorted(raw.parent.iterdir()):
        tag = folder.name.removeprefix(prefix)
        if folder.is_dir() and folder != raw and folder.name.startswith(prefix) and \
                frames_root(dataset, dataset_root, tag) == folder:
            tags.append(tag if tag.endswith("px") else f"{tag}px")
    return tags


def root_of_raw_frames(dataset: str, raw_frames: str | Path) -> Path | None:
    """The dataset root whose raw frame folder is `raw_frames` (an info file's 'prefix'), else None."""
    candidate = Path(raw_frames).parent.parent
    return candidate if raw_frames_root(dataset, candidate) == Path(raw_frames) else None
