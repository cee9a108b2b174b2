"""A run's checkpoint files: what they hold, their rotation and names, and resuming from them.

<work_dir>/last.pt is rewritten at the end of every epoch (and every save_steps steps); the one it
replaces moves to last_previous.pt, kept for when last.pt is damaged. best_model.pt (what inference
needs: weights, config, vocabulary) is written when the dev WER improves, before last.pt (so a kill
between the two leaves a best_model.pt newer than last.pt, which resume adopts), and
epochNNN_model.pt (a copy of last.pt) every save_interval epochs: each is a separate file, never a
hard link to another. Every file carries a checksum (utils/checkpoint.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import nn

from dataset.vocabulary import check_same_vocabulary
from model_building import load_weights
from training.state import TrainState
from training.workdir import claim, discard_previous_run
from utils.checkpoint import (CheckpointError, UnsafeCheckpointError, copy_checkpoint,
                              load_checkpoint, model_state_from_checkpoint, save_checkpoint)
from utils.distributed import all_gather_objects, barrier
from utils.random_state import capture_rng_state, restore_rng_state

if TYPE_CHECKING:
    from training.run import Run

LAST = "last.pt"
PREVIOUS = "last_previous.pt"   # the checkpoint before last.pt, kept for when last.pt is damaged
BEST = "best_model.pt"
CLASSIFIER_KEY = "classifier.weight"  # its rows are the classes, i.e. the dictionary's glosses


@dataclass
class CheckpointBook:
    """A run's bookkeeping of its checkpoint files and of what the user allowed loading."""

    resume_from: Path | None = None   # the checkpoint a training run continues from
    last_good: bool = False           # whether <work_dir>/last.pt is known to be readable
    previous_run: Path | None = None  # the old run --overwrite moved aside, until a checkpoint
    unsafe_load: bool = False         # --unsafe-load: the user trusts the checkpoints given
    other_vocabulary: bool = False    # --other-vocabulary: weights of another dictionary


def epoch_name(epoch: int) -> str:
    """The file name of the copy kept every save_interval epochs."""
    return f"epoch{epoch:03d}_model.pt"


def resume_path(cfg: Mapping[str, Any], work_dir: Path, fresh: bool = False) -> Path | None:
    """The checkpoint a training run continues from: --load-checkpoints, else the run's last one
    (none when `fresh`: --overwrite starts afresh, from --load-checkpoints' state if given)."""
    if cfg["phase"] != "train":
        return None
    if cfg["load_checkpoints"]:
        return Path(cfg["load_checkpoints"])
    if fresh:
        return None
    for name in (LAST, PREVIOUS):
        if (work_dir / name).is_file():
            return work_dir / name
    return None


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


def load_weights_file(model: nn.Module, path: str | Path, ignore: list[str], log: Any,
                      gloss_dict: Mapping[str, Any], unsafe: bool = False,
                      other_vocabulary: bool = False) -> None:
    """Initialise `model` from our checkpoint or a published one (`module.` prefixes are fine)."""
    ckpt = load_checkpoint(path, unsafe=unsafe, log=log)
    check_checkpoint_vocabulary(ckpt, gloss_dict, path, ignore, other_vocabulary)
    state = model_state_from_checkpoint(ckpt)
    dropped = load_weights(model, state, str(path), ignore,
                           hint="Use the config it was trained with (model_args, the gloss "
                                "dictionary), or --set ignore_weights=[...] to skip keys on purpose")
    if ignore:
        log(f"ignored weights from {path}: {dropped or 'none matched ' + str(ignore)}")
    log(f"loaded weights from {path}")


def payload(run: Run) -> dict:
    """Everything an exact resume (or an inference tool) needs."""
    rng = all_gather_objects(capture_rng_state(), run.env)
    return {
        "model_state_dict": run.core.state_dict(),
        "optimizer_state_dict": run.optimizer.state_dict(),
        "scheduler_state_dict": run.scheduler.state_dict(),
        "scaler_state_dict": run.scaler.state_dict(),
        "epoch": run.state.epoch,
        "global_step": run.state.global_step,
        "train_state": run.state.as_dict(),
        "rng_state": rng[0],
        "rng_state_per_rank": rng,
        "config": run.cfg,
        "gloss_dict": {str(k): [int(x) for x in v] for k, v in run.gloss_dict.items()},
        "model_args": run.model_args,
        "best_dev_wer": run.state.best_dev_wer,
    }


# What best_model.pt keeps of the payload: what inference needs (weights, config, vocabulary; the
# checksum is added on writing) and the small counters that resume's reconcile_best reads.
INFERENCE_KEYS = ("model_state_dict", "config", "gloss_dict", "model_args", "epoch", "global_step",
                  "train_state", "best_dev_wer")


def inference_payload(content: Mapping[str, Any]) -> dict:
    """The part of a checkpoint payload that inference needs (no optimizer, scheduler or RNG state)."""
    return {key: content[key] for key in INFERENCE_KEYS if key in content}


def save(run: Run, *names: str) -> None:
    """Write the checkpoint under each name (rank 0 only; every rank joins the RNG gather).

    best_model.pt first, then last.pt, then the other names as copies of last.pt. A new last.pt
    moves the one it replaces to last_previous.pt, if that one is known good (written or read by
    this process): a damaged last.pt never evicts a good previous.
    """
    content = payload(run)
    if run.env.is_main:
        claim(run.work_dir, *names, *([PREVIOUS] if LAST in names and run.book.last_good else []))
        if BEST in names:
            save_checkpoint(run.work_dir / BEST, inference_payload(content))
        first = LAST if LAST in names else next(n for n in names if n != BEST)
        rotate = first == LAST and run.book.last_good
        save_checkpoint(run.work_dir / first, content,
                        previous=run.work_dir / PREVIOUS if rotate else None)
        for name in names:  # copies: serialising a large model once more is not needed
            if name not in (first, BEST):
                copy_checkpoint(run.work_dir / first, run.work_dir / name)
        discard_previous_run(run.book.previous_run)  # the old run --overwrite kept is replaced now
    run.book.previous_run = None
    run.book.last_good = run.book.last_good or LAST in names
    barrier(run.env)


def read_resume_checkpoint(run: Run, path: Path) -> tuple[Path, dict]:
    """Read `path`; a damaged last.pt of the run falls back to last_previous.pt, with a log line."""
    previous = run.work_dir / PREVIOUS
    try:
        ckpt = load_checkpoint(path, unsafe=run.book.unsafe_load, log=run.log)
    except CheckpointError as exc:
        if path != run.work_dir / LAST and path != previous:
            raise  # a file the user named: no fallback
        fallback = (not isinstance(exc, UnsafeCheckpointError) and path != previous
                    and previous.is_file())
        try:
            if not fallback:
                raise exc
            ckpt = load_checkpoint(previous, unsafe=run.book.unsafe_load, log=run.log)
        except CheckpointError as final:
            also = f"; {final}" if final is not exc else ""
            raise CheckpointError(f"cannot resume the run in {run.work_dir}: {exc}{also}; start "
                                  f"afresh with --overwrite (deletes the run) or pass "
                                  f"--load-checkpoints PATH") from final
        run.log(f"warning: {path} is damaged ({exc}); resuming from the checkpoint before it, "
                f"{previous}")
        return previous, ckpt
    run.book.last_good = path == run.work_dir / LAST
    return path, ckpt


def resume(run: Run, path: Path) -> Any:
    """Restore model, optimizer, scheduler, scaler and counters from `path`; returns the RNG
    state to restore right before training (None if the checkpoint has none). Whatever does not
    fit this run (another model or config, a crafted state) is one CheckpointError, raised
    before the run writes or moves anything."""
    path, ckpt = read_resume_checkpoint(run, path)
    if "train_state" in ckpt and "optimizer_state_dict" not in ckpt:
        raise CheckpointError(f"{path} holds what inference needs, not the optimizer state a resume "
                              f"needs: resume from the run's {LAST}, or start a new run from these "
                              f"weights with --load-weights {path}")
    check_checkpoint_vocabulary(ckpt, run.gloss_dict, path, allowed=run.book.other_vocabulary)
    hint = ("Resume with the config it was trained with (model_args, the gloss dictionary), or "
            "start afresh: --overwrite, or another --work-dir")
    load_weights(run.core, model_state_from_checkpoint(ckpt), str(path), hint=hint)
    try:
        rng = restore_training_state(run, ckpt)
    except (RuntimeError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        text = " ".join(str(exc).split())
        raise CheckpointError(f"cannot resume from {path}: its training state does not fit this "
                              f"run ({text[:300]}). {hint}") from None
    where = (f"end of epoch {run.state.epoch}" if run.state.epoch_complete
             else f"epoch {run.state.epoch}, batch {run.state.batch_in_epoch}")
    run.log(f"resumed from {path} ({where}, step {run.state.global_step})")
    if path.parent.resolve() == run.work_dir.resolve():  # best_model.pt is this run's
        reconcile_best(run, path, ckpt)
    return rng


def restore_training_state(run: Run, ckpt: Mapping[str, Any]) -> Any:
    """Load the optimizer, scheduler, scaler, counters and RNG state of `ckpt` into `run`, each
    checked against this run; returns this process's RNG state (None if there is none)."""
    if "optimizer_state_dict" in ckpt:
        run.optimizer.load_state_dict(ckpt["optimizer_state_dict"])
        check_optimizer_state(run.optimizer)
    if "scheduler_state_dict" in ckpt:
        run.scheduler.load_state_dict(ckpt["scheduler_state_dict"])
        run.scheduler.get_last_lr()
    if ckpt.get("scaler_state_dict"):
        run.scaler.load_state_dict(ckpt["scaler_state_dict"])
    if "train_state" in ckpt:
        run.state = TrainState.from_dict(ckpt["train_state"])
    else:  # the original's checkpoints: `epoch` is the last finished epoch
        run.state = TrainState(epoch=int(ckpt.get("epoch", -1)), epoch_complete=True,
                               global_step=int(ckpt.get("global_step", 0)))
    ranks = ckpt.get("rng_state_per_rank") or []
    rng = ranks[run.env.rank] if len(ranks) == run.env.world_size else ckpt.get("rng_state")
    if rng is not None:
        check_rng_state(rng)
    return rng


def check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Every per-parameter tensor of a loaded optimizer state has its parameter's shape (or is a
    scalar, like Adam's step): torch loads a mismatched state and fails only at the first step."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if not isinstance(value, (torch.Tensor, int, float)):
                    raise ValueError(f"optimizer state '{key}' is a {type(value).__name__}")
                if isinstance(value, torch.Tensor) and value.ndim and value.shape != param.shape:
                    raise ValueError(f"optimizer state '{key}' has shape {tuple(value.shape)} for a "
                                     f"parameter of shape {tuple(param.shape)}")
        for key in ("lr", "weight_decay"):
            if key in group and not (isinstance(group[key], (int, float)) and math.isfinite(group[key])):
                raise ValueError(f"optimizer {key} {group[key]!r}")


def check_rng_state(rng: Any) -> None:
    """`rng` can be restored (tried, then this process's own state is put back)."""
    if not isinstance(rng, Mapping):
        raise ValueError(f"RNG state is a {type(rng).__name__}")
    own = capture_rng_state()
    try:
        restore_rng_state(dict(rng))
    finally:
        restore_rng_state(own)


def reconcile_best(run: Run, resumed: Path, ckpt: Mapping[str, Any]) -> None:
    """Make the resumed state and best_model.pt agree after a kill between their writes.

    A best_model.pt with a lower dev WER than the state records was written after the checkpoint
    resumed from: the state adopts it. A state whose best epoch is the resumed checkpoint itself,
    while best_model.pt holds another epoch (the best write never happened), copies it there.
    """
    best, state = run.work_dir / BEST, run.state
    if not best.is_file() or resumed.resolve() == best.resolve():
        return
    try:
        saved = load_checkpoint(best, unsafe=run.book.unsafe_load).get("train_state") or {}
    except CheckpointError as exc:
        run.log(f"warning: {exc}; it is replaced when the dev WER next improves")
        return
    wer, epoch = saved.get("best_dev_wer"), saved.get("best_epoch")
    if isinstance(wer, float) and wer < state.best_dev_wer:
        state.best_dev_wer, state.best_epoch = wer, int(epoch)
        run.log(f"{best} (dev WER {wer:.2f}% at epoch {epoch}) was written after {resumed}: "
                f"it stays the best so far")
    elif (saved and epoch != state.best_epoch and state.best_epoch == state.epoch
          and state.epoch_complete):
        if run.env.is_main:
            save_checkpoint(best, inference_payload(ckpt))
        run.log(f"{best} held epoch {epoch}, not the best epoch {state.best_epoch} that {resumed} "
                f"records: replaced by {resumed}'s weights")
