"""A run's data: resolved dataset paths, the feeder of each split (built once) and its loaders."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from dataset.bucketing import LengthBucketBatchSampler
from dataset.feeder import BaseFeeder
from dataset.feeder_options import FeederOptions
from dataset.registry import DatasetSpec
from utils.config import REPO_ROOT, ConfigError
from utils.device import available_cpus, worker_init
from utils.distributed import DistEnv, ShardedSampler
from utils.errors import UserError
from utils.random_state import SeededDataset
from utils.registry import Registry, is_plain

# The feeders a config's `feeder` key may name (never imported by name from the config).
FEEDERS = Registry("feeder", "feeder")
register_feeder = FEEDERS.register
register_feeder(BaseFeeder)


def error_text(exc: BaseException) -> str:
    """An exception's text (KeyError's without the quotes repr adds)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def dataset_paths(cfg: Mapping[str, Any], spec: DatasetSpec, work_dir: Path) -> dict[str, Path]:
    """Resolved data locations: what dataset_info sets, else the dataset's registry entry (where
    its preprocessing script reads and writes by default, below the repository), else the
    defaults that depend on other keys."""
    info = cfg["dataset_info"]
    dict_path = Path(info["dict_path"]) if info.get("dict_path") else REPO_ROOT / spec.output_dir / "gloss_dict.npy"
    info_dir = Path(info["info_dir"]) if info.get("info_dir") else dict_path.parent
    # A table dataset's video paths start at the table's folder: that is its root.
    root = (Path(info["table"]).parent if info.get("table") else
            Path(info["dataset_root"]) if info.get("dataset_root") else REPO_ROOT / spec.default_root)
    return {
        "dataset_root": root,
        "dict_path": dict_path,
        "info_dir": info_dir,
        "frames_dir": Path(info["frames_dir"]) if info.get("frames_dir") else None,
        "features_dir": Path(info["features_dir"]) if info.get("features_dir") else work_dir / "features",
        "evaluation_dir": Path(info["evaluation_dir"]) if info.get("evaluation_dir") else info_dir,
        "evaluation_prefix": info.get("evaluation_prefix") or spec.evaluation_prefix,
    }


class RunData:
    """The feeders of a run's splits (each built once) and loaders over this process's shard;
    `spec` is the dataset's registry entry, resolved once by build_run."""

    def __init__(self, cfg: Mapping[str, Any], spec: DatasetSpec, paths: Mapping[str, Path],
                 gloss_dict: Mapping[str, Any], kernel_sizes: Sequence[str], env: DistEnv,
                 device: torch.device) -> None:
        self.cfg, self.spec, self.paths, self.gloss_dict = cfg, spec, paths, gloss_dict
        self.kernel_sizes, self.env, self.device = tuple(kernel_sizes), env, device
        # More loader processes than CPUs only compete for them (PyTorch warns at every loader).
        self.workers = min(int(cfg["num_worker"]), available_cpus())
        self._datasets: dict[tuple[str, bool], SeededDataset] = {}

    def stm_path(self, split: str) -> Path:
        """The ground-truth STM a split is scored against."""
        return self.paths["evaluation_dir"] / f"{self.paths['evaluation_prefix']}-{split}.stm"

    def dataset(self, split: str, train: bool) -> SeededDataset:
        """The feeder for one split, wrapped for per-sample seeded augmentation (built once)."""
        if (split, train) not in self._datasets:
            try:
                self._datasets[split, train] = self._new_dataset(split, train)
            except UserError as exc:  # a bug in a feeder keeps its traceback
                raise ConfigError(f"the {split} split: {exc}") from exc
        return self._datasets[split, train]

    def _new_dataset(self, split: str, train: bool) -> SeededDataset:
        """A new feeder for `split` (its feeder_args parsed into FeederOptions)."""
        feeder_class = FEEDERS.get(self.cfg["feeder"])
        section = {k: v for k, v in self.cfg["feeder_args"].items() if k != "mode"}  # the original's configs set it
        odd = [k for k, v in section.items() if not is_plain(v)]
        if odd:
            raise ConfigError(f"key 'feeder_args.{odd[0]}' must be a plain value (bool, int, float, "
                              f"string, null or a list of them)")
        paths = {"info_dir": self.paths["info_dir"], "frames_dir": self.paths["frames_dir"],
                 "features_dir": self.paths["features_dir"]}
        feeder = feeder_class(str(self.paths["dataset_root"]), self.gloss_dict, self.spec,
                              FeederOptions.from_mapping(section), mode=split, transform_mode=train,
                              kernel_size=self.kernel_sizes,
                              **{key: str(value) for key, value in paths.items() if value is not None})
        return SeededDataset(feeder, seed=int(self.cfg["random_seed"]))

    def loader(self, dataset: SeededDataset, train: bool, epoch: int = 0,
               start_batch: int = 0) -> torch.utils.data.DataLoader:
        """A loader over this process's shard; training order depends on (seed, epoch) only."""
        cfg, env = self.cfg, self.env
        batch_size = int(cfg["batch_size"] if train else cfg["test_batch_size"])
        bucketing = cfg["length_bucketing"]
        if train and bucketing["enabled"]:
            batches = LengthBucketBatchSampler(
                dataset.video_lengths(), batch_size, env.world_size, env.rank,
                seed=int(cfg["random_seed"]), pool_batches=int(bucketing["pool_batches"]))
            batches.set_epoch(epoch)
            batches.set_start(start_batch)
            batching: dict[str, Any] = {"batch_sampler": batches}
        else:
            sampler = ShardedSampler(len(dataset), env.world_size, env.rank, shuffle=train,
                                     seed=int(cfg["random_seed"]), drop_last=train)
            sampler.set_epoch(epoch)
            sampler.set_start(start_batch * batch_size)
            batching = {"batch_size": batch_size, "sampler": sampler, "drop_last": train}
        dataset.set_epoch(epoch)
        workers = self.workers
        return torch.utils.data.DataLoader(
            dataset, **batching,
            num_workers=workers, collate_fn=dataset.dataset.collate_fn,
            pin_memory=self.device.type == "cuda", persistent_workers=False, worker_init_fn=worker_init,
            generator=torch.Generator().manual_seed(int(cfg["random_seed"]) + epoch),
            multiprocessing_context="spawn" if workers and sys.platform == "darwin" else None)
