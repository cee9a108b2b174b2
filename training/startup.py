"""Start-up checks: everything a run will need is there before anything is written or deleted."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from dataset.registry import dataset_spec
from evaluation.stm import read_stm
from training.data import RunData, error_text
from utils.config import ConfigError
from utils.random_state import SeededDataset


def check_work_dir(work_dir: Path, overwrite: bool, cfg: Mapping[str, Any]) -> None:
    """The work dir can be created and written; --overwrite would delete nothing the run needs."""
    existing = work_dir.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"work_dir {work_dir}: {existing} is a file, not a folder; pass another "
                          f"--work-dir (key 'work_dir')")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"work_dir {work_dir}: {existing} is not writable; pass another "
                          f"--work-dir (key 'work_dir')")
    if not (overwrite and work_dir.exists()):
        return
    if Path.cwd().resolve().is_relative_to(work_dir.resolve()):
        raise ConfigError(f"--overwrite refuses to delete {work_dir}: it contains the current directory")
    for key in ("load_weights", "load_checkpoints"):
        if cfg[key] and Path(cfg[key]).resolve().is_relative_to(work_dir.resolve()):
            raise ConfigError(f"--overwrite would delete {cfg[key]} (key '{key}') before reading "
                              f"it; copy it out of {work_dir} first")


def check_dataset_name(name: str) -> None:
    """--dataset / key 'dataset' must name a supported dataset."""
    dataset_spec(name, key="--dataset / key 'dataset'")


def dataset_eval_splits(cfg: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """The configured eval_splits that the dataset has, and a note naming those it lacks (CSL: no test)."""
    spec = dataset_spec(cfg["dataset"])
    wanted = list(cfg["eval_splits"])
    kept = [split for split in wanted if split in spec.splits]
    lacking = [split for split in wanted if split not in spec.splits]
    if not lacking:
        return kept, None
    if not kept:
        raise ConfigError(f"eval_splits {wanted}: {spec.name} has only the splits {', '.join(spec.splits)}; "
                          f"name one of them (--set eval_splits=[dev])")
    return kept, (f"{spec.name} has no {' or '.join(lacking)} split ({' and '.join(spec.splits)} only): "
                  f"{cfg['phase']} scores {' and '.join(kept)}")


def check_ground_truth(stm: Path, dataset: SeededDataset, split: str) -> None:
    """The split's STM exists and has a reference sentence for each of its videos."""
    if not stm.is_file():
        raise ConfigError(f"start-up check: the ground truth of the {split} split, {stm}, does not exist. "
                          f"Its path is dataset_info.evaluation_dir (default: the folder of dict_path) / "
                          f"<dataset_info.evaluation_prefix (default '<dataset>-groundtruth')>-{split}.stm; "
                          f"the preprocessing writes it")
    try:
        references = {segment.fileid for segment in read_stm(stm)}
    except ValueError as exc:
        raise ConfigError(f"start-up check: {exc}") from None
    videos = [entry["fileid"] for entry in getattr(dataset, "inputs_list", [])]
    missing = [video for video in videos if video not in references]
    if missing:
        raise ConfigError(f"start-up check: {stm} has no reference for {len(missing)} of the "
                          f"{len(videos)} videos of the {split} split (e.g. {missing[:3]}): it is the "
                          f"ground truth of another dataset or split; check --dataset and "
                          f"dataset_info.evaluation_prefix / evaluation_dir")


def phase_splits(cfg: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """(split, training?) of every split the configured phase will read."""
    phase, evals = cfg["phase"], list(cfg["eval_splits"])
    if phase == "features":
        return [(split, False) for split in dataset_spec(cfg["dataset"]).splits]
    if phase == "test":
        return [(split, False) for split in evals]
    return [("train", True)] + [(split, False) for split in evals
                                if split == "dev" or (split == "test" and cfg["test_best"])]


def check_data(data: RunData, cfg: Mapping[str, Any]) -> None:
    """Every split the phase reads: its feeder builds and its first video loads; the ground
    truth of every split it scores exists and covers that split's videos."""
    for split, train in phase_splits(cfg):
        dataset = data.dataset(split, train)
        try:
            dataset[0]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"start-up check: the first video of the {split} split cannot be "
                              f"read: {error_text(exc)} (frames are looked up under "
                              f"dataset_info.dataset_root={data.paths['dataset_root']}, "
                              f"feeder_args.frames_res, dataset_info.frames_dir)") from None
        if not train and cfg["phase"] != "features":
            check_ground_truth(data.stm_path(split), dataset, split)

