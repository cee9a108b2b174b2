"""A run's progress counters (saved in every checkpoint) and its training-step settings."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

import torch

from utils.config import default_config


@dataclass
class TrainState:
    """Progress counters saved in every checkpoint (what an exact resume needs)."""

    epoch: int = 0                 # epoch in progress (0-based)
    batch_in_epoch: int = 0        # batches of `epoch` already consumed on each process
    epoch_complete: bool = False   # True once `epoch` finished (resume then starts epoch + 1)
    global_step: int = 0           # optimizer steps taken
    best_dev_wer: float = math.inf
    best_epoch: int = -1
    skipped_batches: int = 0       # batches dropped for a non-finite loss, over the whole run
    epoch_loss_sum: float = 0.0    # so that an epoch split by a resume still reports its full mean
    epoch_loss_count: int = 0
    epoch_skipped: int = 0
    batches: int = 0               # batches consumed over the whole run (for the skipped share)
    skipped_videos: list[str] = field(default_factory=list)  # videos of skipped batches
    dropped_videos: list[str] = field(default_factory=list)  # videos CTC cannot align, dropped alone

    def start_epoch(self, epoch: int) -> None:
        """Reset the per-epoch counters for a new epoch."""
        self.epoch, self.batch_in_epoch, self.epoch_complete = epoch, 0, False
        self.epoch_loss_sum, self.epoch_loss_count, self.epoch_skipped = 0.0, 0, 0

    def as_dict(self) -> dict:
        """Plain values for the checkpoint payload."""
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: Any) -> "TrainState":
        """The counters a checkpoint saved, each of its field's type (a ValueError names the first
        that is not): a crafted or damaged train_state fails here, not in the middle of an epoch."""
        if not isinstance(saved, dict):
            raise ValueError(f"train_state is a {type(saved).__name__}, not a mapping")
        defaults = asdict(cls())
        for key, value in saved.items():
            if key not in defaults:
                raise ValueError(f"train_state has an unknown key {key!r}")
            default = defaults[key]
            if isinstance(default, list):
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            elif isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 or key == "best_epoch")
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
            if not ok:
                raise ValueError(f"train_state {key}={value!r} is not a valid {type(default).__name__}")
        return cls(**saved)


@dataclass
class StepOptions:
    """How a training step runs: the config's keys of that name (defaults: config/baseline.yaml)."""

    device: torch.device
    amp_dtype: torch.dtype | None
    grad_accum: int
    clip_grad_norm: float
    skip_nonfinite: bool
    log_interval: int
    max_steps: int                 # stop after this many optimizer steps (0 = no limit)
    save_steps: int                # call `on_checkpoint` every N optimizer steps (0 = never)
    progress_bar: bool
    compiled: bool                 # the model is torch.compiled: mark each batch's time dim dynamic

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], device: torch.device, amp: torch.dtype | None
                    ) -> StepOptions:
        """The training-step settings of a resolved config."""
        return cls(device=device, amp_dtype=amp, grad_accum=int(cfg["grad_accum"]),
                   clip_grad_norm=float(cfg["clip_grad_norm"]), skip_nonfinite=bool(cfg["skip_nonfinite"]),
                   log_interval=int(cfg["log_interval"]), max_steps=int(cfg["max_steps"]),
                   save_steps=int(cfg["save_steps"]), progress_bar=bool(cfg["progress_bar"]),
                   compiled=cfg["phase"] == "train" and cfg["compile"] != "none")

    @classmethod
    def recipe(cls, **changes: Any) -> StepOptions:
        """The published recipe's settings (config/baseline.yaml), eager on the CPU, with `changes`."""
        return replace(cls.from_config(default_config(), torch.device("cpu"), None), **changes)
