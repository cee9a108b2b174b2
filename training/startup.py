"""Start-up checks: everything a run will need is there before anything is written or deleted."""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from dataset.layout import parse_resolution
from dataset.provenance import RECORD, recorded_dataset
from dataset.registry import DATASETS, DatasetSpec, dataset_spec
from evaluation.stm import read_stm
from modules.criterions import unalignable
from training.data import RunData, error_text
from training.workdir import is_moved_run, previous_dir, read_manifest
from utils.config import ConfigError
from utils.errors import BadFileError, UserError
from utils.random_state import SeededDataset


def existing_ancestor(path: Path) -> Path:
    """`path` itself if it exists, else its nearest existing parent (where it would be created)."""
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    return existing


def check_work_dir(work_dir: Path, overwrite: bool, cfg: Mapping[str, Any]) -> None:
    """The work dir can be created and written; --overwrite would delete nothing the run needs."""
    existing = existing_ancestor(work_dir)
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


def check_dataset_name(name: str) -> DatasetSpec:
    """--dataset / key 'dataset' must name a supported dataset: its registry entry."""
    return dataset_spec(name, key="--dataset / key 'dataset'")


def dataset_eval_splits(cfg: Mapping[str, Any], spec: DatasetSpec) -> tuple[list[str], str | None]:
    """The configured eval_splits that dataset `spec` has, and a note naming those it lacks (CSL: no test)."""
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
    except BadFileError as exc:
        raise ConfigError(f"start-up check: {exc}") from exc
    videos = [entry["fileid"] for entry in getattr(dataset, "inputs_list", [])]
    missing = [video for video in videos if video not in references]
    if missing:
        raise ConfigError(f"start-up check: {stm} has no reference for {len(missing)} of the "
                          f"{len(videos)} videos of the {split} split (e.g. {missing[:3]}): it is the "
                          f"ground truth of another dataset or split; check --dataset and "
                          f"dataset_info.evaluation_prefix / evaluation_dir")


def phase_splits(cfg: Mapping[str, Any], spec: DatasetSpec) -> list[tuple[str, bool]]:
    """(split, training?) of every split of dataset `spec` the configured phase will read."""
    phase, evals = cfg["phase"], list(cfg["eval_splits"])
    if phase == "features":
        return [(split, False) for split in spec.splits]
    if phase == "test":
        return [(split, False) for split in evals]
    return [("train", True)] + [(split, False) for split in evals
                                if split == "dev" or (split == "test" and cfg["test_best"])]


def check_dataset_claim(cfg: Mapping[str, Any], paths: Mapping[str, Path], splits: Sequence[str]) -> list[Path]:
    """Refuse data that preprocessing recorded as another dataset than --dataset (dataset.provenance);
    returns the files without a record (the original tools', or changed since), which are not checked."""
    claim = cfg["dataset"]
    unchecked = []
    for path in [paths["dict_path"], *(paths["info_dir"] / f"{split}_info.npy" for split in splits)]:
        recorded = recorded_dataset(path)
        if recorded is None:
            unchecked.append(path)
        elif recorded != claim:
            raise ConfigError(f"start-up check: --dataset {claim} (key 'dataset'), but {path} is {recorded} data "
                              f"(recorded by its preprocessing in {path.parent / RECORD}); pass --dataset "
                              f"{recorded}, or point dataset_info.dict_path / info_dir at the {claim} files")
    return unchecked


def too_short_videos(dataset: SeededDataset, kernel_sizes: Sequence[str]) -> list[tuple[str, int, int, int, int]]:
    """(video, frames, glosses, output steps, steps needed) of each video whose frames, as evaluation
    reads them, leave fewer steps after temporal pooling than CTC needs for its glosses."""
    feeder = dataset.dataset
    labels = getattr(feeder, "labels", None)
    if labels is None or not hasattr(feeder, "video_lengths") or not kernel_sizes:
        return []  # a feeder that does not say its lengths and labels up front
    frames = [int(n) for n in feeder.video_lengths()]
    interval = int(getattr(feeder, "frame_interval", 1))
    shape = (1, 1, 1) if getattr(feeder, "data_type", "video") == "video" else (1,)
    # One collated batch of stand-in clips of each video's length: the lengths the model is given.
    batch = feeder.collate_fn([(torch.zeros((max(math.ceil(n / interval), 1), *shape), dtype=torch.uint8),
                                torch.as_tensor(label, dtype=torch.long), str(i))
                               for i, (n, label) in enumerate(zip(frames, labels))])
    _, video_len, label, label_len, order = batch[:5]
    found = []
    for row, steps, need in unalignable(video_len, label, label_len, kernel_sizes):
        i = int(order[row])
        found.append((feeder.inputs_list[i]["fileid"] if hasattr(feeder, "inputs_list") else str(i),
                      frames[i], len(labels[i]), steps, need))
    return found


def short_videos_warning(split: str, total: int, short: Sequence[tuple[str, int, int, int, int]]) -> str:
    """The start-up warning about a split's videos too short for their glosses."""
    examples = "; ".join(f"{fileid}: {frames} frames leave {steps} steps for {glosses} glosses, which need "
                         f"{need}" for fileid, frames, glosses, steps, need in short[:3])
    return (f"warning: {len(short)} of the {total} videos of the {split} split are too short for their "
            f"glosses after temporal pooling ({examples}{'; ...' if len(short) > 3 else ''}): CTC cannot align "
            f"them as they are. Training stretches clips shorter than feeder_args.temporal_min_len and drops "
            f"those still too short (log.txt names them); evaluation scores them as they are. Check these "
            f"videos, or lower feeder_args.frame_interval")


def check_data(data: RunData, cfg: Mapping[str, Any], log: Callable[[str], None] = print) -> None:
    """Every split the phase reads: its info files are of the dataset the run claims, it has videos,
    its feeder builds and its first video loads; the ground truth of every split it scores exists
    and covers that split's videos. Videos too short for their glosses are logged as a warning."""
    splits = phase_splits(cfg, data.spec)
    unchecked = check_dataset_claim(cfg, data.paths, sorted({split for split, _ in splits}))
    if unchecked:
        log(f"note: {', '.join(str(p) for p in unchecked)}: no record of their dataset (written by the "
            f"original tools or an older preprocessing, or changed since): not checked against --dataset "
            f"{cfg['dataset']}")
    for split, train in splits:
        dataset = data.dataset(split, train)
        if len(dataset) == 0:
            raise ConfigError(f"start-up check: the {split} split has no videos "
                              f"({data.paths['info_dir'] / f'{split}_info.npy'}); re-run the preprocessing "
                              f"(it refuses empty splits) or point dataset_info.info_dir at a complete one")
        try:
            dataset[0]
        except UserError as exc:  # a bug in a feeder's __getitem__ keeps its traceback
            raise ConfigError(f"start-up check: the first video of the {split} split cannot be "
                              f"read: {exc} (frames are looked up under "
                              f"dataset_info.dataset_root={data.paths['dataset_root']}, "
                              f"feeder_args.frames_res, dataset_info.frames_dir)") from exc
        if not train and cfg["phase"] != "features":
            check_ground_truth(data.stm_path(split), dataset, split)
        short = too_short_videos(dataset, data.kernel_sizes)
        if short:
            log(short_videos_warning(split, len(dataset), short))


REPO_ROOT = Path(__file__).resolve().parents[1]
# The repository's own folders that are not Python packages (packages are found by __init__.py).
REPO_FOLDERS = (".git", ".ci", ".venv", "bench", "config", "docs", "preprocess", "software", "tests")


def data_kind(folder: Path) -> str | None:
    """What kind of data `folder` is ('a preprocess output', 'a pack', 'a dataset root'), else None."""
    if (folder / RECORD).is_file():
        return "a preprocess output"
    if next(folder.glob("*.frames.npy"), None) is not None:
        return "a pack"
    for spec in DATASETS.values():
        subdir = spec.raw_frames_subdir
        if subdir not in ("", ".") and (folder / subdir).is_dir():
            return f"a dataset root ({spec.name} layout)"
    return None


def repository_folder(folder: Path) -> bool:
    """Whether `folder` is, holds or lies inside the repository's own code, configs or docs."""
    if REPO_ROOT.is_relative_to(folder):
        return True
    if not folder.is_relative_to(REPO_ROOT):
        return False
    top = REPO_ROOT / folder.relative_to(REPO_ROOT).parts[0]
    return top.name in REPO_FOLDERS or (top / "__init__.py").is_file()


def check_overwrite(work_dir: Path, paths: Mapping[str, Path | None], config_file: str | None) -> None:
    """--overwrite moves only what runs recorded, and refuses a work dir that is, holds or lies
    inside the dataset, the dictionary, the info files, the config file, any preprocess output,
    pack or dataset root, or the repository's own folders; or whose `.previous` folder holds
    anything but a moved run."""
    if not work_dir.exists():
        return
    root = work_dir.resolve()
    named = {f"dataset_info.{key}": path for key, path in paths.items()
             if key in ("dataset_root", "dict_path", "info_dir", "evaluation_dir", "frames_dir")}
    named["--config"] = Path(config_file) if config_file else None
    for key, path in named.items():
        if path is None:
            continue
        target = path.resolve()
        if target.is_relative_to(root):
            raise ConfigError(f"--overwrite refuses the work dir {work_dir}: it holds {path} ({key}); "
                              f"pass a --work-dir of its own for the run's outputs")
        if root.is_relative_to(target):
            raise ConfigError(f"--overwrite refuses the work dir {work_dir}: it lies inside {path} "
                              f"({key}); pass a --work-dir of its own for the run's outputs")
    recorded = [root / name for name in read_manifest(root) or [] if (root / name).is_dir()]
    for folder in [root, *root.parents, *recorded]:
        kind = data_kind(folder)
        if kind:
            where = "is" if folder == root else "lies inside" if folder in root.parents else "holds"
            raise ConfigError(f"--overwrite refuses the work dir {work_dir}: it {where} {kind}, "
                              f"{folder}; pass a --work-dir of its own for the run's outputs")
    if repository_folder(root):
        raise ConfigError(f"--overwrite refuses the work dir {work_dir}: it is, holds or lies inside "
                          f"the repository's own folders ({REPO_ROOT}); use a folder of its own such "
                          f"as work_dir/<name>")
    aside = previous_dir(work_dir)
    if (aside.exists() or aside.is_symlink()) and not is_moved_run(aside):
        raise ConfigError(f"--overwrite keeps the previous run in {aside} until the new one has "
                          f"written a checkpoint, but that {'symlink' if aside.is_symlink() else 'folder'} "
                          f"exists and is not one it made; move it away")


def check_batches(data: RunData, cfg: Mapping[str, Any]) -> None:
    """The training split gives every process at least one batch."""
    if cfg["phase"] != "train":
        return
    videos, batch_size = len(data.dataset("train", True)), int(cfg["batch_size"])
    if videos // data.env.world_size // batch_size == 0:
        raise ConfigError(f"start-up check: the training split has {videos} videos: fewer than one "
                          f"batch of {batch_size} per process ({data.env.world_size} processes); "
                          f"lower batch_size")


def check_all_frames(data: RunData, cfg: Mapping[str, Any]) -> None:
    """Every video of every split the phase reads has its frame files (as many as its info file
    says, none empty, the first at the feeder's frames_res), checked without decoding."""
    for split, train in phase_splits(cfg, data.spec):
        feeder = data.dataset(split, train).dataset
        if getattr(feeder, "data_type", None) != "video" or getattr(feeder, "packed", False):
            continue  # features, or a pack (checked when opened)
        expected = parse_resolution(feeder.frame_source.frames_res)  # the feeder's, default included
        problems = [problem for index in range(len(feeder))
                    if (problem := video_frames_problem(feeder, index, expected))]
        if problems:
            raise ConfigError(f"start-up check: {len(problems)} of the {len(feeder)} videos of the "
                              f"{split} split cannot be read: {problems[0]} (frames are looked up under "
                              f"dataset_info.dataset_root={data.paths['dataset_root']}, "
                              f"feeder_args.frames_res, dataset_info.frames_dir)")


def video_frames_problem(feeder: Any, index: int, expected: tuple[int, int]) -> str:
    """What is wrong with the frame files of video `index` ('' if nothing)."""
    from PIL import Image

    try:
        files = feeder.frame_files(index)
        empty = [name for name in files if os.stat(name).st_size == 0]
        if empty:
            return f"{len(empty)} of its {len(files)} frame files are empty (e.g. {empty[0]})"
        with Image.open(files[0]) as image:  # reads the header only
            size = image.size
    except (OSError, ValueError) as exc:
        return error_text(exc)
    if size != expected:
        return (f"{files[0]} is {size[0]}x{size[1]} pixels, not the {expected[0]}x{expected[1]} of "
                f"feeder_args.frames_res: resized for another resolution")
    return ""


def check_disk_space(work_dir: Path, model: nn.Module, cfg: Mapping[str, Any]) -> None:
    """A training run has room for a checkpoint (weights and two optimizer moments, as Adam's)."""
    if cfg["phase"] != "train":
        return
    existing = existing_ancestor(work_dir)
    needed = 3 * sum(t.numel() * t.element_size() for t in model.state_dict().values())
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise ConfigError(f"start-up check: {existing} has {free:,} bytes free, but a checkpoint of "
                          f"this model needs about {needed:,}; free some space or pass another --work-dir")
