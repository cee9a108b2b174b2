"""STFNet entry point: `python main.py --config config/<dataset>.yaml [--phase train|test|features]`.

Multi-process: `torchrun --nproc_per_node N main.py --config ... --device 0,1,...` (gloo on CPU).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from dataset.bucketing import LengthBucketBatchSampler
from dataset.layout import DATASETS
from dataset.vocabulary import VocabularyMismatchError, check_same_vocabulary, load_gloss_dict
from evaluation.stm import read_stm
from inference.loading import CheckpointMismatchError, load_weights, model_kwargs
from seq_scripts import (StepOptions, TrainState, score_hypotheses, seq_eval,
                         seq_feature_generation, seq_train)
from utils.atomic import link_or_copy_atomic
from utils.checkpoint import (CheckpointError, UnsafeCheckpointError, load_checkpoint,
                              model_state_from_checkpoint, save_checkpoint)
from utils.compile import CompileError, check_compile_mode, compile_for_training
from utils.config import ConfigError, check_kwargs, closest_key, import_class, resolve_config, save_config
from utils.decode import Decode
from utils.device import amp_dtype, make_grad_scaler, quiet_opencv_threads, select_device, worker_init
from utils.distributed import (DistEnv, ShardedSampler, all_gather_objects, barrier,
                               broadcast_module_state, broadcast_object, convert_sync_batchnorm,
                               env_from_environ, init_process_group, new_sync_group, shutdown)
from utils.optimizer import build_optimizer, build_scheduler, current_lr
from utils.random_state import SeededDataset, capture_rng_state, restore_rng_state, seed_everything
from utils.record import MetricsLog, RunLog, divert_warnings

LAST = "last.pt"
PREVIOUS = "last_previous.pt"   # the checkpoint before last.pt, kept for when last.pt is damaged
BEST = "best_model.pt"


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
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r} (--dataset / key 'dataset'){closest_key(name, DATASETS)} "
                          f"(valid: {', '.join(DATASETS)})")


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


def _message(exc: BaseException) -> str:
    """An exception's text (KeyError's without the quotes repr adds)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def prepare_work_dir(work_dir: Path, overwrite: bool, env: DistEnv) -> None:
    """Create the work dir; with `overwrite`, delete an existing one first (after the start-up checks)."""
    if env.is_main:
        if overwrite and work_dir.exists():
            shutil.rmtree(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
    barrier(env)


def dataset_paths(cfg: Mapping[str, Any], work_dir: Path) -> dict[str, Path]:
    """Resolved data locations, filling the defaults that depend on other keys."""
    info = cfg["dataset_info"]
    dict_path = Path(info["dict_path"])
    info_dir = Path(info["info_dir"]) if info.get("info_dir") else dict_path.parent
    return {
        "dataset_root": Path(info["dataset_root"]),
        "dict_path": dict_path,
        "info_dir": info_dir,
        "frames_dir": Path(info["frames_dir"]) if info.get("frames_dir") else None,
        "features_dir": Path(info["features_dir"]) if info.get("features_dir") else work_dir / "features",
        "evaluation_dir": Path(info["evaluation_dir"]) if info.get("evaluation_dir") else info_dir,
        "evaluation_prefix": info.get("evaluation_prefix") or f"{cfg['dataset']}-groundtruth",
    }


def build_decoder(cfg: Mapping[str, Any], gloss_dict: Mapping[str, Any], model_args: Mapping[str, Any]) -> Decode:
    """The evaluation decoder: decode_mode / beam_width of the model, LM fusion from decode_args."""
    args = cfg["decode_args"]
    try:
        return Decode(gloss_dict, int(model_args["num_classes"]), str(model_args["search_mode"]),
                      beam_width=int(model_args["beam_width"]), lm=args["lm_path"] or None,
                      lm_weight=float(args["lm_weight"]), word_bonus=float(args["word_bonus"]),
                      token_min_logp=args["token_min_logp"], beam_prune_logp=args["beam_prune_logp"])
    except ValueError as exc:  # a malformed ARPA file or a greedy mode with an LM
        raise ConfigError(f"decode_args / decode_mode: {exc}") from exc


CLASSIFIER_KEY = "classifier.weight"  # its rows are the classes, i.e. the dictionary's glosses


def check_checkpoint_vocabulary(ckpt: Mapping[str, Any], gloss_dict: Mapping[str, Any], path: str | Path,
                                ignore: Sequence[str] = (), allowed: bool = False) -> None:
    """Refuse weights trained with another gloss dictionary of the same size (another size fails to load).

    Published weights carry no dictionary and cannot be checked; with the classifier in
    `ignore_weights` the classes are learnt anew, so the vocabulary may differ.
    """
    saved = ckpt.get("gloss_dict") if isinstance(ckpt, Mapping) else None
    if (allowed or not isinstance(saved, Mapping) or len(saved) != len(gloss_dict)
            or any(CLASSIFIER_KEY == key or CLASSIFIER_KEY.startswith(key + ".") for key in ignore)):
        return
    check_same_vocabulary(
        gloss_dict, saved, "dataset_info.dict_path", f"{path}['gloss_dict']", "--other-vocabulary",
        remedy="Set dataset_info.dict_path to the dictionary it was trained with, put the classifier "
               "in ignore_weights (--set ignore_weights=[classifier,conv1d.fc]) to fine-tune on this "
               "vocabulary")


def load_weights_file(model: nn.Module, path: str | Path, ignore: list[str], log: RunLog,
                      gloss_dict: Mapping[str, Any], unsafe: bool = False,
                      other_vocabulary: bool = False) -> None:
    """Initialise `model` from our checkpoint or a published one (`module.` prefixes are fine)."""
    ckpt = load_checkpoint(path, unsafe=unsafe)
    check_checkpoint_vocabulary(ckpt, gloss_dict, path, ignore, other_vocabulary)
    state = model_state_from_checkpoint(ckpt)
    dropped = load_weights(model, state, str(path), ignore,
                           hint="Use the config it was trained with (model_args, the gloss "
                                "dictionary), or --set ignore_weights=[...] to skip keys on purpose")
    if ignore:
        log(f"ignored weights from {path}: {dropped or 'none matched ' + str(ignore)}")
    log(f"loaded weights from {path}")


class Processor:
    """Builds model, data and optimizer from a resolved config, then runs one phase."""

    def __init__(self, cfg: dict, overwrite: bool = False, unsafe_load: bool = False,
                 other_vocabulary: bool = False) -> None:
        self.cfg = cfg
        self.unsafe_load = unsafe_load  # --unsafe-load: the user trusts the checkpoints given
        self.other_vocabulary = other_vocabulary  # --other-vocabulary: weights of another dictionary
        self._last_good = False         # whether <work_dir>/last.pt is known to be readable
        self._datasets: dict[tuple[str, bool], SeededDataset] = {}
        quiet_opencv_threads()
        self.env = env_from_environ()
        try:
            self.device = select_device(cfg["device"], self.env.local_rank, self.env.world_size)
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"{exc} (key 'device')") from None
        init_process_group(self.env, self.device, cfg["dist_backend"])
        self.work_dir = Path(cfg["work_dir"])
        # Start-up checks come first: nothing is written, and with --overwrite nothing deleted,
        # until everything the run will need later is known to be there.
        self.log = RunLog(self.work_dir, enabled=self.env.is_main and cfg["print_log"], deferred=True)
        divert_warnings(self.log)
        check_work_dir(self.work_dir, overwrite, cfg)
        check_dataset_name(cfg["dataset"])
        self.amp = amp_dtype(cfg["amp"], self.device)
        self.compile_mode = cfg["compile"] if cfg["phase"] == "train" else "none"
        check_compile_mode(self.compile_mode, self.device)
        self.paths = dataset_paths(cfg, self.work_dir)
        try:
            self.gloss_dict = load_gloss_dict(self.paths["dict_path"], hint="set dataset_info.dict_path")
        except ValueError as exc:  # damaged, malformed or refused as unsafe: one error line
            raise ConfigError(f"dataset_info.dict_path: {exc}") from None
        self.resume_path = None if overwrite else self._resume_path()
        seed = int(cfg["random_seed"])
        seed_everything(seed, cfg["deterministic"])  # same seed everywhere: identical initial weights
        model_class = import_class(cfg["model"])
        self.model_args, note = model_kwargs(cfg, model_class, len(self.gloss_dict) + 1)
        if note:
            self.log(note)
        # Evaluation decodes whole chunks of a split (self.decoder), so the model does not decode.
        try:
            self.core: nn.Module = model_class(**self.model_args, gloss_dict=None,
                                               loss_weights=dict(cfg["loss_weights"]))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"cannot build the model {cfg['model']} from model_args: {exc}") from None
        self.decoder = build_decoder(cfg, self.gloss_dict, self.model_args)
        if cfg["load_weights"] and not self.resume_path:
            load_weights_file(self.core, cfg["load_weights"], list(cfg["ignore_weights"]), self.log,
                              self.gloss_dict, unsafe_load, other_vocabulary)
        elif cfg["phase"] != "train" and cfg["load_checkpoints"]:
            load_weights_file(self.core, cfg["load_checkpoints"], [], self.log, self.gloss_dict,
                              unsafe_load, other_vocabulary)
        self._check_data()
        prepare_work_dir(self.work_dir, overwrite, self.env)
        self.log.attach()
        if self.env.is_main:
            self._save_config()
        self.core.to(self.device)
        train = cfg["phase"] == "train"
        if self.env.distributed and train and cfg["sync_bn"]:
            group = new_sync_group(self.env, self.device)
            self.core = convert_sync_batchnorm(self.core, self.device, group)
        # The training forward runs through self.model: compiled (inside DDP, so that DDP's
        # hooks see the plain parameters) when asked. Evaluation and checkpoints use self.core,
        # so state-dict keys are those of an eager run.
        self.model: nn.Module = self.core
        if train and self.compile_mode != "none":
            self.model = compile_for_training(self.core, self.compile_mode)
        if self.env.distributed and train:
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(cfg["find_unused_parameters"]))
        self.optimizer = build_optimizer(self.core, cfg["optimizer_args"])
        self.scheduler = build_scheduler(self.optimizer, cfg["optimizer_args"], cfg["num_epoch"])
        self.scaler = make_grad_scaler(self.device, self.amp)
        self.state = TrainState(epoch=int(cfg["optimizer_args"]["start_epoch"]))
        seed_everything(seed + self.env.rank)  # per-process streams (dropout) from here on
        self.metrics = MetricsLog(self.work_dir, cfg["tensorboard"]) if self.env.is_main else None

    # ----------------------------------------------------------------------------- setup helpers
    def _splits(self) -> list[tuple[str, bool]]:
        """(split, training?) of every split this phase will read."""
        phase, evals = self.cfg["phase"], list(self.cfg["eval_splits"])
        if phase == "features":
            return [(split, False) for split in ("train", "dev", "test")]
        if phase == "test":
            return [(split, False) for split in evals]
        return [("train", True)] + [(split, False) for split in evals
                                    if split == "dev" or (split == "test" and self.cfg["test_best"])]

    def _check_data(self) -> None:
        """Every split the phase reads: its feeder builds and its first video loads; the ground
        truth of every split it scores exists and covers that split's videos."""
        for split, train in self._splits():
            dataset = self.build_dataset(split, train)
            try:
                dataset[0]
            except (OSError, ValueError, KeyError) as exc:
                raise ConfigError(f"start-up check: the first video of the {split} split cannot be "
                                  f"read: {_message(exc)} (frames are looked up under "
                                  f"dataset_info.dataset_root={self.paths['dataset_root']}, "
                                  f"feeder_args.frames_res, dataset_info.frames_dir)") from None
            if not train and self.cfg["phase"] != "features":
                check_ground_truth(self.stm_path(split), dataset, split)

    def stm_path(self, split: str) -> Path:
        """The ground-truth STM a split is scored against."""
        return self.paths["evaluation_dir"] / f"{self.paths['evaluation_prefix']}-{split}.stm"

    def _resume_path(self) -> Path | None:
        """The checkpoint a training run continues from: --load-checkpoints, else the run's last one."""
        if self.cfg["phase"] != "train":
            return None
        if self.cfg["load_checkpoints"]:
            return Path(self.cfg["load_checkpoints"])
        for name in (LAST, PREVIOUS):
            if (self.work_dir / name).is_file():
                return self.work_dir / name
        return None

    def _save_config(self) -> None:
        """Write the resolved config; on a resume, log which keys changed since the last run."""
        path = self.work_dir / "config.yaml"
        if path.is_file():
            import yaml

            old = yaml.safe_load(path.read_text()) or {}
            changed = sorted(k for k in set(old) | set(self.cfg) if old.get(k) != self.cfg.get(k))
            if changed:
                self.log(f"config differs from the previous run in this work dir: {changed}")
        save_config(self.cfg, path)

    def build_dataset(self, split: str, train: bool) -> SeededDataset:
        """The feeder for one split, wrapped for per-sample seeded augmentation (built once)."""
        if (split, train) not in self._datasets:
            try:
                self._datasets[split, train] = self._new_dataset(split, train)
            except (OSError, ValueError, KeyError) as exc:
                raise ConfigError(f"the {split} split: {_message(exc)}") from None
        return self._datasets[split, train]

    def _new_dataset(self, split: str, train: bool) -> SeededDataset:
        """A new feeder for `split` (feeder_args checked against its constructor)."""
        feeder_class = import_class(self.cfg["feeder"])
        kwargs = {k: v for k, v in self.cfg["feeder_args"].items() if k != "mode"}
        kwargs.update(prefix=str(self.paths["dataset_root"]), gloss_dict=self.gloss_dict,
                      dataset=self.cfg["dataset"], mode=split, transform_mode=train,
                      kernel_size=tuple(self.core.kernel_sizes))
        optional = {"info_dir": self.paths["info_dir"], "frames_dir": self.paths["frames_dir"],
                    "features_dir": self.paths["features_dir"]}
        import inspect

        accepted = inspect.signature(feeder_class).parameters
        for key, value in optional.items():
            if value is not None and key in accepted:
                kwargs[key] = str(value)
        check_kwargs(feeder_class, kwargs, "feeder_args")
        return SeededDataset(feeder_class(**kwargs), seed=int(self.cfg["random_seed"]))

    def build_loader(self, dataset: SeededDataset, train: bool, epoch: int = 0,
                     start_batch: int = 0) -> torch.utils.data.DataLoader:
        """A loader over this process's shard; training order depends on (seed, epoch) only."""
        batch_size = int(self.cfg["batch_size"] if train else self.cfg["test_batch_size"])
        bucketing = self.cfg["length_bucketing"]
        if train and bucketing["enabled"]:
            batches = LengthBucketBatchSampler(
                dataset.video_lengths(), batch_size, self.env.world_size, self.env.rank,
                seed=int(self.cfg["random_seed"]), pool_batches=int(bucketing["pool_batches"]))
            batches.set_epoch(epoch)
            batches.set_start(start_batch)
            batching: dict[str, Any] = {"batch_sampler": batches}
        else:
            sampler = ShardedSampler(len(dataset), self.env.world_size, self.env.rank, shuffle=train,
                                     seed=int(self.cfg["random_seed"]), drop_last=train)
            sampler.set_epoch(epoch)
            sampler.set_start(start_batch * batch_size)
            batching = {"batch_size": batch_size, "sampler": sampler, "drop_last": train}
        dataset.set_epoch(epoch)
        workers = int(self.cfg["num_worker"])
        return torch.utils.data.DataLoader(
            dataset, **batching,
            num_workers=workers, collate_fn=dataset.dataset.collate_fn,
            pin_memory=self.device.type == "cuda", persistent_workers=False, worker_init_fn=worker_init,
            generator=torch.Generator().manual_seed(int(self.cfg["random_seed"]) + epoch),
            multiprocessing_context="spawn" if workers and sys.platform == "darwin" else None)

    # ----------------------------------------------------------------------------- checkpoints
    def payload(self) -> dict:
        """Everything an exact resume (or an inference tool) needs."""
        rng = all_gather_objects(capture_rng_state(), self.env)
        return {
            "model_state_dict": self.core.state_dict(),
            "optimizer_state_dict": self.optimizer.state_dict(),
            "scheduler_state_dict": self.scheduler.state_dict(),
            "scaler_state_dict": self.scaler.state_dict(),
            "epoch": self.state.epoch,
            "global_step": self.state.global_step,
            "train_state": self.state.as_dict(),
            "rng_state": rng[0],
            "rng_state_per_rank": rng,
            "config": self.cfg,
            "gloss_dict": {str(k): [int(x) for x in v] for k, v in self.gloss_dict.items()},
            "model_args": self.model_args,
            "best_dev_wer": self.state.best_dev_wer,
        }

    def save(self, *names: str) -> None:
        """Write the checkpoint under each name (rank 0 only; every rank joins the RNG gather).

        A new last.pt first moves the one it replaces to last_previous.pt, if that one is known
        good (written or read by this process): a damaged last.pt never evicts a good previous.
        """
        payload = self.payload()
        if self.env.is_main:
            rotate = names[0] == LAST and self._last_good
            save_checkpoint(self.work_dir / names[0], payload,
                            previous=self.work_dir / PREVIOUS if rotate else None)
            for name in names[1:]:  # copies: serialising a large model once is enough
                link_or_copy_atomic(self.work_dir / names[0], self.work_dir / name)
        self._last_good = self._last_good or names[0] == LAST
        barrier(self.env)

    def _read_resume_checkpoint(self, path: Path) -> tuple[Path, dict]:
        """Read `path`; a damaged last.pt of the run falls back to last_previous.pt, with a log line."""
        previous = self.work_dir / PREVIOUS
        try:
            ckpt = load_checkpoint(path, unsafe=self.unsafe_load)
        except CheckpointError as exc:
            if path != self.work_dir / LAST and path != previous:
                raise  # a file the user named: no fallback
            fallback = (not isinstance(exc, UnsafeCheckpointError) and path != previous
                        and previous.is_file())
            try:
                if not fallback:
                    raise exc
                ckpt = load_checkpoint(previous, unsafe=self.unsafe_load)
            except CheckpointError as final:
                also = f"; {final}" if final is not exc else ""
                raise CheckpointError(f"cannot resume the run in {self.work_dir}: {exc}{also}; start "
                                      f"afresh with --overwrite (deletes the run) or pass "
                                      f"--load-checkpoints PATH") from final
            self.log(f"warning: {path} is damaged ({exc}); resuming from the checkpoint before it, "
                     f"{previous}")
            return previous, ckpt
        self._last_good = path == self.work_dir / LAST
        return path, ckpt

    def resume(self, path: Path) -> None:
        """Restore model, optimizer, scheduler, scaler, counters and RNG states from `path`."""
        path, ckpt = self._read_resume_checkpoint(path)
        check_checkpoint_vocabulary(ckpt, self.gloss_dict, path, allowed=self.other_vocabulary)
        self.core.load_state_dict(model_state_from_checkpoint(ckpt))
        if "optimizer_state_dict" in ckpt:
            self.optimizer.load_state_dict(ckpt["optimizer_state_dict"])
        if "scheduler_state_dict" in ckpt:
            self.scheduler.load_state_dict(ckpt["scheduler_state_dict"])
        if ckpt.get("scaler_state_dict"):
            self.scaler.load_state_dict(ckpt["scaler_state_dict"])
        if "train_state" in ckpt:
            self.state = TrainState(**ckpt["train_state"])
        else:  # the original's checkpoints: `epoch` is the last finished epoch
            self.state = TrainState(epoch=int(ckpt.get("epoch", -1)), epoch_complete=True,
                                    global_step=int(ckpt.get("global_step", 0)))
        ranks = ckpt.get("rng_state_per_rank") or []
        rng = ranks[self.env.rank] if len(ranks) == self.env.world_size else ckpt.get("rng_state")
        if rng is not None:
            self._pending_rng = rng
        where = (f"end of epoch {self.state.epoch}" if self.state.epoch_complete
                 else f"epoch {self.state.epoch}, batch {self.state.batch_in_epoch}")
        self.log(f"resumed from {path} ({where}, step {self.state.global_step})")

    # ----------------------------------------------------------------------------- phases
    def start(self) -> dict:
        """Run the configured phase; returns its summary (WERs, steps)."""
        phase = self.cfg["phase"]
        self.log(f"phase {phase} on {self.device} (world size {self.env.world_size}), "
                 f"work dir {self.work_dir}")
        try:
            if phase == "train":
                return self.train()
            if phase == "test":
                return self.test()
            return self.features()
        finally:
            if self.metrics is not None:
                self.metrics.close()

    def step_options(self) -> StepOptions:
        """The training-step settings from the config."""
        c = self.cfg
        return StepOptions(device=self.device, amp_dtype=self.amp, grad_accum=int(c["grad_accum"]),
                           clip_grad_norm=float(c["clip_grad_norm"]),
                           skip_nonfinite=bool(c["skip_nonfinite"]),
                           log_interval=int(c["log_interval"]), max_steps=int(c["max_steps"]),
                           save_steps=int(c["save_steps"]), progress_bar=bool(c["progress_bar"]),
                           compiled=self.compile_mode != "none")

    def train(self) -> dict:
        """Epochs of training, dev evaluation, checkpoints; then the best model on the test set."""
        self._pending_rng = None
        if self.resume_path is not None:
            self.resume(self.resume_path)
        train_set = self.build_dataset("train", train=True)
        dev_set = self.build_dataset("dev", train=False) if "dev" in self.cfg["eval_splits"] else None
        opts = self.step_options()
        batch_size = int(self.cfg["batch_size"])
        per_rank = len(train_set) // self.env.world_size
        total_batches = per_rank // batch_size
        if total_batches == 0:
            raise ConfigError(f"the training split has {len(train_set)} videos: fewer than one batch "
                              f"of {batch_size} per process; lower batch_size")
        if self._pending_rng is not None:
            restore_rng_state(self._pending_rng)  # last: nothing may draw between this and training
        first = self.state.epoch + 1 if self.state.epoch_complete else self.state.epoch
        stopped, start_time = False, time.time()
        for epoch in range(first, int(self.cfg["num_epoch"])):
            if self.state.epoch != epoch or self.state.epoch_complete:
                self.state.start_epoch(epoch)
            loader = self.build_loader(train_set, True, epoch, self.state.batch_in_epoch)
            lr = current_lr(self.optimizer)
            epoch_start = time.time()
            result = seq_train(loader, self.model, self.core, self.optimizer, self.scaler,
                               self.state, opts, self.env, self.log,
                               on_checkpoint=lambda: self.save(LAST), total_batches=total_batches)
            self._check_progress(epoch)
            if result.stopped:
                self.save(LAST)
                self.log(f"stopped after {self.state.global_step} steps (max_steps); "
                         f"rerun into {self.work_dir} to continue")
                stopped = True
                break
            self.scheduler.step()
            self.state.epoch_complete = True
            row: dict[str, Any] = {"epoch": epoch, "lr": lr, "loss": result.mean_loss,
                                   **{f"loss_{k}": v for k, v in result.terms.items()},
                                   "skipped_batches": self.state.epoch_skipped,
                                   "videos_per_s": result.videos_per_s,
                                   "padded_fraction": result.padded_fraction,
                                   "epoch_time_s": time.time() - epoch_start}
            terms = ", ".join(f"{k} {v:.4f}" for k, v in result.terms.items())
            self.log(f"epoch {epoch}: mean loss {result.mean_loss:.4f} ({terms}), {self.state.epoch_skipped} skipped "
                     f"batches, {result.videos_per_s:.1f} videos/s, {result.padded_fraction:.1%} padded frames, "
                     f"{time.time() - epoch_start:.0f}s")
            names = [LAST]
            last_epoch = epoch == int(self.cfg["num_epoch"]) - 1
            if dev_set is not None and ((epoch + 1) % int(self.cfg["eval_interval"]) == 0 or last_epoch):
                scores = self.evaluate(dev_set, "dev", f"epoch_{epoch}")
                if scores is not None:
                    row.update(dev_wer=scores["lstm"]["wer"], dev_conv_wer=scores["conv"]["wer"])
                wer = broadcast_object(scores["lstm"]["wer"] if scores else None, self.env)
                if wer is not None and wer < self.state.best_dev_wer:
                    self.state.best_dev_wer, self.state.best_epoch = wer, epoch
                    names.append(BEST)
                self.log(f"epoch {epoch}: dev WER {wer:.2f}% (best {self.state.best_dev_wer:.2f}% "
                         f"at epoch {self.state.best_epoch})")
            if (epoch + 1) % int(self.cfg["save_interval"]) == 0:
                names.append(f"epoch{epoch:03d}_model.pt")
            self.save(*names)
            if self.metrics is not None:
                self.metrics.append(row)
                self.metrics.plot()
        summary: dict[str, Any] = {"global_step": self.state.global_step, "stopped": stopped,
                                   "best_dev_wer": self.state.best_dev_wer,
                                   "best_epoch": self.state.best_epoch,
                                   "skipped_batches": self.state.skipped_batches,
                                   "train_time_s": time.time() - start_time}
        dropped = self.state.dropped_videos
        summary["dropped_videos"] = list(dropped)
        self.log(f"training: {self.state.global_step} steps, {self.state.skipped_batches} skipped "
                 f"batches, {len(dropped)} videos dropped{' ' + str(dropped) if dropped else ''}, "
                 f"{summary['train_time_s']:.0f}s")
        if not stopped and self.cfg["test_best"] and "test" in self.cfg["eval_splits"]:
            best = self.work_dir / BEST
            if best.is_file():
                self.core.load_state_dict(model_state_from_checkpoint(load_checkpoint(best)))
                self.log(f"final test of {best} (dev WER {self.state.best_dev_wer:.2f}%)")
            scores = self.evaluate(self.build_dataset("test", train=False), "test", "test_best")
            if scores is not None:
                summary["test_wer"] = scores["lstm"]["wer"]
                summary["test_conv_wer"] = scores["conv"]["wer"]
        self._write_summary("train_results.json", summary)
        return summary

    def _check_progress(self, epoch: int) -> None:
        """End the run (non-zero exit, before any dev evaluation or best_model.pt) when it is not
        really training: no optimizer step, or more than max_skipped_share of the batches skipped."""
        state, limit = self.state, float(self.cfg["max_skipped_share"])
        share = state.skipped_batches / max(state.batches, 1)
        if state.global_step > 0 and share <= limit:
            return
        reason = ("it took no optimizer step" if state.global_step == 0 else
                  f"{share:.0%} of its batches were skipped, more than max_skipped_share={limit:g}")
        videos = sorted(set(state.skipped_videos))
        listing = ", ".join(videos[:10]) + (f" ... (+{len(videos) - 10})" if len(videos) > 10 else "")
        message = (f"training failed in epoch {epoch}: {reason} ({state.skipped_batches} of "
                   f"{state.batches} batches skipped for a non-finite loss; their videos: "
                   f"{listing or 'none on this process'}). log.txt says why for each batch; no "
                   f"best_model.pt was written for this epoch")
        self.log(message)
        raise TrainingFailed(message)

    def evaluate(self, dataset: SeededDataset, split: str, tag: str) -> dict | None:
        """Decode `split`, write CTMs under <work_dir>/<tag>/, score; rank 0 returns the scores."""
        loader = self.build_loader(dataset, train=False)
        broadcast_module_state(self.core, self.env)  # every process scores the weights rank 0 saves
        decode_args = self.cfg["decode_args"]
        logits = {} if self.cfg["phase"] == "test" and decode_args["save_logits"] else None
        start, decode_before = time.perf_counter(), self.decoder.seconds
        hyps = seq_eval(loader, self.core, self.device, self.amp, self.env,
                        progress_bar=bool(self.cfg["progress_bar"]), desc=f"{split} {tag}",
                        decoder=self.decoder, chunk_size=int(decode_args["chunk_size"]),
                        logits_out=logits)
        if hyps is None:
            return None
        self.log(f"{split} ({tag}): evaluation {time.perf_counter() - start:.2f} s, of which decoding "
                 f"{self.decoder.seconds - decode_before:.2f} s ({self.decoder.search_mode}"
                 f"{', LM ' + str(decode_args['lm_path']) if decode_args['lm_path'] else ''}"
                 f"{', pruned' if self.decoder.pruned else ''})")
        if logits is not None:
            from utils.split_logits import class_glosses, save_split_logits

            path = self.work_dir / tag / f"{split}-logits.pt"
            save_split_logits(path, logits["ids"], logits["logits"],
                              class_glosses(self.gloss_dict, self.decoder.num_classes))
            self.log(f"{split} logits saved to {path} (LM tuning: python tune_lm.py)")
        scores = score_hypotheses(hyps, self.stm_path(split), self.work_dir / tag, split, self.cfg["dataset"],
                                  self.cfg["evaluate_tool"])
        self.log(f"{split} ({tag}): WER {scores['lstm']['wer']:.2f}% (BiLSTM), "
                 f"{scores['conv']['wer']:.2f}% (temporal stack); "
                 f"sub {scores['lstm'].get('sub')}, del {scores['lstm'].get('del')}, "
                 f"ins {scores['lstm'].get('ins')} of {scores['lstm'].get('words')} words")
        return scores

    def test(self) -> dict:
        """Dev and test WER of the loaded weights, CTMs and reports under <work_dir>/eval/."""
        summary: dict[str, Any] = {}
        for split in self.cfg["eval_splits"]:
            scores = self.evaluate(self.build_dataset(split, train=False), split, "eval")
            if scores is not None:
                summary[f"{split}_wer"] = scores["lstm"]["wer"]
                summary[f"{split}_conv_wer"] = scores["conv"]["wer"]
        self._write_summary("test_results.json", summary)
        return summary

    def features(self) -> dict:
        """Frame features of every split for the `features` feeder mode."""
        out = self.paths["features_dir"]
        counts = {}
        for split in ("train", "dev", "test"):
            dataset = self.build_dataset(split, train=False)
            counts[split] = seq_feature_generation(self.build_loader(dataset, train=False), self.core,
                                                   self.device, self.amp, out / split, self.env,
                                                   bool(self.cfg["progress_bar"]))
            self.log(f"features: {counts[split]} videos of {split} written to {out / split}")
        return counts

    def _write_summary(self, name: str, summary: Mapping[str, Any]) -> None:
        """A JSON summary of the phase in the work dir (rank 0)."""
        if self.env.is_main:
            clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                     for k, v in summary.items()}
            (self.work_dir / name).write_text(json.dumps(clean, indent=2) + "\n")


class TrainingFailed(RuntimeError):
    """The run ended without really training (the message names the batches' videos)."""


USER_ERRORS = (TrainingFailed, ConfigError, FileNotFoundError, CheckpointError, CheckpointMismatchError,
               VocabularyMismatchError, CompileError)


def main(argv: list[str] | None = None) -> dict:
    """Parse the command line and run the phase."""
    cfg, args = resolve_config(argv)
    with warnings.catch_warnings():  # restores the warning hook the run diverts into log.txt
        try:
            return Processor(cfg, overwrite=args.overwrite, unsafe_load=args.unsafe_load,
                             other_vocabulary=args.other_vocabulary).start()
        finally:
            shutdown()


def cli(argv: list[str] | None = None) -> int:
    """main() with one `error:` line and exit status 2 for mistakes in input, config or files."""
    try:
        main(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
