"""Optimizer and per-epoch learning-rate schedule from the `optimizer_args` config section."""
from __future__ import annotations

import bisect
import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from utils.errors import ConfigError

OPTIMIZERS = ("SGD", "Adam", "AdamW")
SCHEDULERS = ("multistep", "cosine", "constant")


def build_optimizer(model: nn.Module, args: Mapping[str, Any]) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov), Adam or AdamW over the trainable parameters, as the recipe says."""
    name = args["optimizer"]
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = float(args["base_lr"]), float(args["weight_decay"])
    for key, value in (("base_lr", lr), ("weight_decay", wd), ("momentum", float(args["momentum"]))):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"key 'optimizer_args.{key}' must be a finite number >= 0, got {args[key]!r}")
    if name == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=float(args["momentum"]),
                               nesterov=bool(args["nesterov"]), weight_decay=wd)
    if name == "Adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "AdamW":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise ConfigError(f"optimizer_args.optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")


class EpochSchedule:
    """Learning-rate factor of an epoch: optional linear warm-up, then step decay or cosine."""

    def __init__(self, kind: str, milestones: Sequence[int], gamma: float, num_epoch: int,
                 warmup_epochs: int = 0) -> None:
        if kind not in SCHEDULERS:
            raise ConfigError(f"optimizer_args.scheduler {kind!r}: expected one of {', '.join(SCHEDULERS)}")
        self.kind = kind
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.num_epoch = max(int(num_epoch), 1)
        self.warmup_epochs = int(warmup_epochs)
        if not (math.isfinite(self.gamma) and self.gamma >= 0) or self.warmup_epochs < 0:
            raise ConfigError(f"optimizer_args.gamma {gamma!r} / warmup_epochs {warmup_epochs!r}: "
                              f"expected a finite gamma >= 0 and warmup_epochs >= 0")

    def __call__(self, epoch: int) -> float:
        warm = min(1.0, (epoch + 1) / self.warmup_epochs) if self.warmup_epochs > 0 else 1.0
        if self.kind == "multistep":
            # The original's MultiStepLR: multiply by gamma at each milestone reached.
            return warm * self.gamma ** bisect.bisect_right(self.milestones, epoch)
        if self.kind == "cosine":
            return warm * 0.5 * (1.0 + math.cos(math.pi * min(epoch, self.num_epoch) / self.num_epoch))
        return warm


def build_scheduler(optimizer: torch.optim.Optimizer, args: Mapping[str, Any],
                    num_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped once per epoch (its state_dict holds the epoch counter)."""
    schedule = EpochSchedule(args["scheduler"], args["step"], args["gamma"], num_epoch,
                             args["warmup_epochs"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The first parameter group's learning rate (what the logs show)."""
    return float(optimizer.param_groups[0]["lr"])
