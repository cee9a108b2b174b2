"""The dataset registry: every fact about a supported dataset, in one frozen entry per dataset.

Preprocessing, the feeders, evaluation, inference and the synthetic generator read these entries;
none of them names a dataset itself: a name is looked up here once, where it enters (a config, a
--dataset), and its entry handed down. Adding a dataset is one entry in DATASETS below plus its
annotation parser in preprocess/datasets.py (PARSERS). This module imports nothing heavy (no
torch, no OpenCV), so that every layer can use it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from utils.errors import ConfigError, closest_key

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: where its download lives, how its frames are laid out, how it is scored."""

    name: str  # the config's `dataset`, --dataset / --format, and the prefix of the files written for it
    default_root: str  # the download's default location, relative to the repository root (the original
    # README's `ln -s` target; the config's dataset_info.dataset_root)
    root_marker: str  # the folder or file below the root that identifies the download (its annotations)
    frames_dir: str  # a frame folder below the root, {width} and {height} filled in (raw and resized alike,
    # unless raw_frames_dir says otherwise)
    raw_frame_size: tuple[int, int]  # (width, height) of the frames as the download ships them
    frame_suffix: str  # the frame files' extension
    preprocess_script: str  # the script that prepares it (run from the repository root)
    gloss_language: str  # the glosses' language: 'de' (German glosses) or 'zh' (Chinese words)
    language_names: tuple[str, ...]  # what the tools' --language accepts for it; the first is its choice
    gloss_normalisation: str | None = None  # scoring rules (evaluation.normalise.RULES); None: as written
    # Whether preprocessing writes STMs from annotations with the scorer's gloss normalisation by
    # default: PHOENIX hypotheses are normalised before scoring, so their references are too. The
    # published PHOENIX-2014-T STMs keep two raw glosses (HABEN2) that no normalised hypothesis can
    # match; --no-stm-normalise reproduces those files byte for byte.
    stm_normalised: bool = False
    official_stm: str | None = None  # the download's own ground truth, {split} filled in, below the root
    splits: tuple[str, ...] = SPLITS
    raw_frames_dir: str | None = None  # the raw frames' folder below the root when it is not frames_dir at
    # the raw size ('': the video folders lie in the root itself)
    from_table: bool = False  # videos listed in an annotation table (preprocess/table.py) and decoded
    # straight into the frame pack, instead of a download's frame folders (preprocess/datasets.py)

    @property
    def evaluation_prefix(self) -> str:
        """Ground-truth STMs are <evaluation_prefix>-<split>.stm (the config's dataset_info.evaluation_prefix)."""
        return f"{self.name}-groundtruth"

    @property
    def output_dir(self) -> str:
        """Where preprocessing writes info files, gloss dict and STMs by default (repository-relative)."""
        return f"preprocess/{self.name}"

    @property
    def raw_frame_tag(self) -> str:
        """'WxHpx' of the frames as the download ships them."""
        return "{}x{}px".format(*self.raw_frame_size)

    @property
    def raw_frames_subdir(self) -> str:
        """The raw frames' folder relative to the root ('' for the root itself)."""
        if self.raw_frames_dir is not None:
            return self.raw_frames_dir
        width, height = self.raw_frame_size
        return self.frames_dir.format(width=width, height=height)


_PHOENIX_FRAMES = "features/fullFrame-{width}x{height}px"

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec(name="phoenix2014", default_root="dataset/phoenix2014/phoenix-2014-multisigner",
                root_marker="annotations/manual", frames_dir=_PHOENIX_FRAMES, raw_frame_size=(210, 260),
                frame_suffix=".png", preprocess_script="preprocess/dataset_preprocess.py", gloss_language="de",
                language_names=("phoenix", "phoenix2014"), gloss_normalisation="phoenix", stm_normalised=True,
                official_stm="evaluation/phoenix2014-groundtruth-{split}.stm"),
    DatasetSpec(name="phoenix2014-T", default_root="dataset/phoenix2014-T",
                root_marker="annotations/manual", frames_dir=_PHOENIX_FRAMES, raw_frame_size=(210, 260),
                frame_suffix=".png", preprocess_script="preprocess/dataset_preprocess-T.py", gloss_language="de",
                language_names=("phoenix2014-T",), gloss_normalisation="phoenix", stm_normalised=True,
                official_stm="evaluation/phoenix2014-T-groundtruth-{split}.stm"),
    DatasetSpec(name="CSL-Daily", default_root="dataset/CSL-Daily",
                # the download's own folder names, without 'px'
                root_marker="sentence_label", frames_dir="sentence/frames_{width}x{height}",
                raw_frame_size=(512, 512), frame_suffix=".jpg",
                preprocess_script="preprocess/dataset_preprocess-CSL-Daily.py", gloss_language="zh",
                language_names=("csl-daily",)),
    # CSL (USTC's continuous CSL, 100 sentences, 25,000 videos), laid out as the original tools read it:
    # one folder of *.jpg frames per video (video0 ... video24999, extracted from the 1280x720 videos)
    # directly in the root, the original's split files train.txt and dev.txt beside them, resized
    # frames under features/. No test split: training evaluates dev.
    DatasetSpec(name="CSL", default_root="dataset/CSL", root_marker="train.txt", frames_dir=_PHOENIX_FRAMES,
                raw_frame_size=(1280, 720), frame_suffix=".jpg", raw_frames_dir="",
                preprocess_script="preprocess/dataset_preprocess-CSL.py", gloss_language="zh",
                language_names=("csl",), splits=("train", "dev")),
    # Your own sign language: one table (CSV/TSV: video, glosses, split, optional signer and id) whose
    # videos (files or frame folders, relative to the table's folder, the root) are decoded straight
    # into the JPEG frame pack; trained from the pack only. Glosses in any language, scored as written.
    DatasetSpec(name="table", default_root="dataset/table", root_marker="table.csv",
                frames_dir="frames-{width}x{height}px",
                raw_frame_size=(256, 256), frame_suffix=".jpg", raw_frames_dir="",
                preprocess_script="preprocess/__main__.py", gloss_language="de", language_names=("table",),
                from_table=True),
)}
NAMES = tuple(DATASETS)


def dataset_spec(name: str, key: str = "--dataset / key 'dataset'") -> DatasetSpec:
    """The entry of dataset `name`; a ConfigError naming `key` and the closest name otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown dataset {name!r} ({key}){closest_key(str(name), NAMES)} "
                          f"(valid: {', '.join(NAMES)})") from None


def dataset_of_stm(path: str | os.PathLike) -> DatasetSpec:
    """The dataset a ground-truth STM's file name names (<evaluation_prefix>-<split>.stm, as preprocessing
    writes it); a ConfigError asking for --dataset when the name does not tell."""
    name = Path(path).name
    for spec in DATASETS.values():
        prefix = f"{spec.evaluation_prefix}-"
        if name.startswith(prefix) and name.endswith(".stm") and len(name) > len(prefix) + len(".stm"):
            return spec
    raise ConfigError(f"{path}: its file name does not tell the dataset (preprocessing names ground truths "
                      f"<dataset>-groundtruth-<split>.stm); pass --dataset (one of {', '.join(NAMES)})")


def language_choices() -> list[str]:
    """The tools' --language choices: each dataset's first language name."""
    return [spec.language_names[0] for spec in DATASETS.values()]


def dataset_for_language(language: str) -> DatasetSpec:
    """The dataset a --language name stands for."""
    names = {name: spec for spec in DATASETS.values() for name in spec.language_names}
    if language not in names:
        raise ConfigError(f"unknown language {language!r}{closest_key(language, names)}; use one of "
                          f"{sorted(names)}")
    return names[language]
