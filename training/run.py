"""Building a run from a resolved config: devices and process group, start-up checks, model,
optimizer, scheduler, scaler, data and train state, in the order an exact resume relies on."""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from dataset.registry import DatasetSpec
from dataset.vocabulary import load_gloss_dict
from decoding.config import DecodeConfig
from decoding.decoder import Decoder, read_lm
from model_building import MAX_PARAM_GIB, build_model
from training import checkpoints
from training.checkpoints import CheckpointBook, load_weights_file, resume_path
from training.data import RunData, dataset_paths
from training.startup import (check_all_frames, check_batches, check_data, check_dataset_name,
                              check_disk_space, check_overwrite, check_work_dir, dataset_eval_splits)
from training.state import StepOptions, TrainState
from training.workdir import (WorkDirLock, check_ownership, claim, is_moved_run, move_previous_run,
                              previous_dir, read_record)
from utils.compile import check_compile_mode, compile_for_training
from utils.config import ConfigError, save_config
from utils.errors import BadFileError
from utils.device import amp_dtype, make_grad_scaler, quiet_opencv_threads, select_device
from utils.distributed import (DistEnv, barrier, broadcast_object, convert_sync_batchnorm, env_from_environ,
                               init_process_group, new_sync_group)
from utils.optimizer import build_optimizer, build_scheduler
from utils.random_state import seed_everything
from utils.record import MetricsLog, RunLog, divert_warnings


@dataclass
class Run:
    """What a run is: the model, its optimizer, scheduler and scaler, the data and decoder, the
    progress state and step settings; `build_run` makes it from a config. Bookkeeping of its
    files (where it resumes from, the old run --overwrite moved aside, ...) is `book`.

    The training forward runs through `model` (compiled, inside DDP, when asked); the loss
    (`core.loss_terms`), evaluation and checkpoints use the bare `core`, so state-dict keys
    are those of an eager run. Only `core` and `optimizer` are needed to train an epoch.
    """

    core: nn.Module
    optimizer: torch.optim.Optimizer
    model: nn.Module | None = None          # None: `core`
    scheduler: Any = None
    scaler: torch.amp.GradScaler | None = None  # None: a disabled one
    state: TrainState = field(default_factory=TrainState)
    opts: StepOptions = field(default_factory=StepOptions.recipe)
    env: DistEnv = field(default_factory=DistEnv)
    log: Callable[[str], None] = print
    cfg: dict = field(default_factory=dict)
    work_dir: Path = Path(".")
    gloss_dict: Mapping[str, Any] = field(default_factory=dict)
    model_args: dict = field(default_factory=dict)
    data: RunData | None = None
    decoder: Decoder | None = None          # evaluation's; decoder.cfg is the `decode:` section
    metrics: MetricsLog | None = None
    book: CheckpointBook = field(default_factory=CheckpointBook)  # its files: resume, rotation, --overwrite
    resume_rng: Any = None                  # the resumed checkpoint's RNG state, restored right before training
    lock: WorkDirLock | None = None         # the work dir's lock, released when the run ends

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = self.core
        if self.scaler is None:
            self.scaler = torch.amp.GradScaler(self.opts.device.type, enabled=False)


def prepare_work_dir(work_dir: Path, overwrite: bool, env: DistEnv, log: Callable[[str], None]
                     ) -> Path | None:
    """With `overwrite`, move the old run's recorded entries (only those) to <work_dir>.previous
    (training/workdir.py), whose path it returns. Runs after every start-up check."""
    aside = None
    if env.is_main:
        if overwrite:
            aside = move_previous_run(work_dir, log)
        elif is_moved_run(previous_dir(work_dir)):  # an earlier --overwrite's run never replaced
            aside = previous_dir(work_dir)
            log(f"{aside} (moved aside by --overwrite) is deleted once this run has written its "
                f"first checkpoint")
    barrier(env)
    return aside


def evaluation_dir(work_dir: Path, cfg: Mapping[str, Any]) -> Path:
    """Where a `--phase test` run writes: the work dir when it is new, empty or an evaluation's;
    in a training run's work dir, its own eval_<weights>/ folder (the run's files stay as they are)."""
    record = read_record(work_dir)
    if not work_dir.exists() or not any(work_dir.iterdir()) or (record and record["phase"] == "test"):
        return work_dir
    weights = Path(cfg["load_weights"] or cfg["load_checkpoints"] or "model")
    tag = re.sub(r"[^A-Za-z0-9._-]+", "_", weights.stem) or "model"
    return work_dir / f"eval_{tag}"


def write_config(cfg: Mapping[str, Any], path: Path, log: Callable[[str], None]) -> None:
    """Write the resolved config; on a resume, log which keys changed since the last run."""
    if path.is_file():
        import yaml

        old = yaml.safe_load(path.read_text()) or {}
        changed = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k))
        if changed:
            log(f"config differs from the previous run in this work dir: {changed}")
    save_config(cfg, path)


def build_run(cfg: dict, overwrite: bool = False, unsafe_load: bool = False,
              other_vocabulary: bool = False, config_file: str | None = None,
              max_param_gib: float = MAX_PARAM_GIB) -> Run:
    """Check everything the configured phase needs, then build it. Nothing is written (and with
    `overwrite` nothing moved) until every start-up check has passed and the run holds the work
    dir's lock. `config_file`: the --config file, which --overwrite must not hold."""
    quiet_opencv_threads()
    env = env_from_environ()
    try:
        device = select_device(cfg["device"], env.local_rank, env.world_size)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"{exc} (key 'device')") from exc
    init_process_group(env, device, cfg["dist_backend"])
    work_dir = Path(cfg["work_dir"])
    check_work_dir(work_dir, overwrite, cfg)
    check_ownership(work_dir)
    spec = check_dataset_name(cfg["dataset"])  # resolved here once, and handed down
    paths = dataset_paths(cfg, spec, work_dir)  # a default features_dir is the run's, also for evaluation
    if cfg["phase"] == "test" and (own := evaluation_dir(work_dir, cfg)) != work_dir:
        check_work_dir(own, overwrite, cfg)
        check_ownership(own)
        if env.is_main:
            claim(work_dir, own.name)  # the training run's record lists its evaluations' folders
        work_dir = own
        cfg["work_dir"] = str(work_dir)
    log = RunLog(work_dir, enabled=env.is_main and cfg["print_log"], deferred=True)
    divert_warnings(log)
    lock, created, refused = WorkDirLock(work_dir), not work_dir.exists(), None
    if env.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(log)
        except ConfigError as exc:
            refused = str(exc)
            if created:
                work_dir.rmdir()
    refused = broadcast_object(refused, env)  # every process stops, not only the one that asked
    if refused:
        raise ConfigError(refused)
    try:
        run = _build_run(cfg, env, device, work_dir, spec, paths, log, overwrite, unsafe_load,
                         other_vocabulary, config_file, max_param_gib)
    except BaseException:
        lock.release()
        if created and env.is_main and work_dir.is_dir() and not any(work_dir.iterdir()):
            work_dir.rmdir()  # a run that failed its checks leaves nothing behind
        raise
    run.lock = lock
    return run


def _build_run(cfg: dict, env: DistEnv, device: torch.device, work_dir: Path, spec: DatasetSpec,
               paths: dict, log: RunLog, overwrite: bool, unsafe_load: bool, other_vocabulary: bool,
               config_file: str | None, max_param_gib: float) -> Run:
    """build_run's checks and construction, once the run holds the work dir."""
    decode = DecodeConfig.from_mapping(cfg["decode"])
    cfg["eval_splits"], note = dataset_eval_splits(cfg, spec)
    if note:
        log(note)
    amp = amp_dtype(cfg["amp"], device)
    train = cfg["phase"] == "train"
    check_compile_mode(cfg["compile"] if train else "none", device)
    if overwrite:
        check_overwrite(work_dir, paths, config_file)
    try:
        gloss_dict = load_gloss_dict(paths["dict_path"], hint="set dataset_info.dict_path",
                                     script=spec.preprocess_script)
    except BadFileError as exc:  # damaged, malformed or refused as unsafe: one error line
        raise ConfigError(f"dataset_info.dict_path: {exc}") from exc
    # --overwrite with --load-checkpoints X: a fresh work dir continuing X's training state.
    resume_from = resume_path(cfg, work_dir, fresh=overwrite)
    seed = int(cfg["random_seed"])
    seed_everything(seed, cfg["deterministic"])  # same seed everywhere: identical initial weights
    core, model_args = build_model(cfg, len(gloss_dict) + 1, log, resume_from, max_param_gib)
    decoder = Decoder(decode, gloss_dict, read_lm(decode), num_classes=model_args["num_classes"])
    if cfg["load_weights"] and not resume_from:
        load_weights_file(core, cfg["load_weights"], list(cfg["ignore_weights"]), log, gloss_dict,
                          unsafe_load, other_vocabulary)
    elif not train and cfg["load_checkpoints"]:
        load_weights_file(core, cfg["load_checkpoints"], [], log, gloss_dict, unsafe_load,
                          other_vocabulary)
    data = RunData(cfg, spec, paths, gloss_dict, core.kernel_sizes, env, device)
    if data.workers < int(cfg["num_worker"]):
        log(f"num_worker {cfg['num_worker']} capped at {data.workers}: the CPUs this process may use "
            f"(more loader processes would only compete for them)")
    check_data(data, cfg, log)
    for split in (["train"] if train else cfg["eval_splits"][:1]):  # one line: the splits share a source
        origin = getattr(data.dataset(split, train).dataset, "frames_origin", None)
        if origin is not None:
            log(f"{split} frames: {origin()}")
    check_batches(data, cfg)
    check_all_frames(data, cfg)
    check_disk_space(work_dir, core, cfg)
    core.to(device)
    if env.distributed and train and cfg["sync_bn"]:
        core = convert_sync_batchnorm(core, device, new_sync_group(env, device))
    opts = StepOptions.from_config(cfg, device, amp)
    model = compile_for_training(core, cfg["compile"]) if opts.compiled else core
    if env.distributed and train:  # around the compiled module: DDP's hooks see the plain parameters
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(cfg["find_unused_parameters"]))
    optimizer = build_optimizer(core, cfg["optimizer_args"])
    scheduler = build_scheduler(optimizer, cfg["optimizer_args"], cfg["num_epoch"])
    scaler = make_grad_scaler(device, amp)
    state = TrainState(epoch=int(cfg["optimizer_args"]["start_epoch"]))
    run = Run(core=core, optimizer=optimizer, model=model, scheduler=scheduler, scaler=scaler,
              state=state, opts=opts, env=env, log=log, cfg=cfg, work_dir=work_dir,
              gloss_dict=gloss_dict, model_args=model_args, data=data, decoder=decoder,
              book=CheckpointBook(resume_from=resume_from, unsafe_load=unsafe_load,
                                  other_vocabulary=other_vocabulary))
    if resume_from is not None:  # read and checked here: a bad checkpoint moves nothing
        run.resume_rng = checkpoints.resume(run, resume_from)
    run.book.previous_run = prepare_work_dir(work_dir, overwrite, env, log)
    if env.is_main:
        claim(work_dir, "log.txt", "config.yaml", phase=cfg["phase"])
    log.attach()
    if env.is_main:
        write_config(cfg, work_dir / "config.yaml", log)
    seed_everything(seed + env.rank)  # per-process streams (dropout) from here on
    if env.is_main and train:
        tensorboard = bool(cfg["tensorboard"]) and importlib.util.find_spec("tensorboard") is not None
        claim(work_dir, "metrics.csv", "curves.png", *(["tensorboard"] if tensorboard else []))
        run.metrics = MetricsLog(work_dir, tensorboard)
        if cfg["tensorboard"] and (not tensorboard or run.metrics.tensorboard_off):
            reason = run.metrics.tensorboard_off or "the tensorboard package is not installed"
            log(f"tensorboard: no events are written ({reason}); metrics.csv and curves.png hold the "
                f"same numbers. `pip install tensorboard` to get them, or set tensorboard: false to "
                f"silence this line")
    return run
