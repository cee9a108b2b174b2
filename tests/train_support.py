"""Helpers for the main.py tests: a tiny preprocessed synthetic dataset and a tiny config."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from torch import nn

from dataset.feeder import BaseFeeder
from dataset.feeder_options import FeederOptions
from dataset.registry import dataset_spec
from slr_network import SLRModel, register_model
from utils.config import default_config

REPO_ROOT = Path(__file__).resolve().parents[1]


@register_model
class NoDropoutSLRModel(SLRModel):
    """SLRModel without the BiLSTM's dropout, so runs with different process counts can match."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for module in self.modules():
            if isinstance(module, nn.RNNBase):
                module.dropout = 0.0


@register_model
class NaNOnceSLRModel(SLRModel):
    """SLRModel whose loss is NaN for the batches listed in `nan_batches` (counted per process)."""

    nan_batches = (1,)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def loss_terms(self, outputs, labels, label_lengths):
        terms = super().loss_terms(outputs, labels, label_lengths)
        self.calls += 1
        if self.calls in self.nan_batches:
            terms["SeqCTC"] = terms["SeqCTC"] * torch.tensor(float("nan"))
        return terms


@register_model
class NaNAlwaysSLRModel(NaNOnceSLRModel):
    """SLRModel whose loss is always NaN: a run that never takes an optimizer step."""

    nan_batches = range(1, 10**9)


def make_tiny_dataset(root: Path) -> dict[str, Path]:
    """Generate the tiny synthetic PHOENIX-2014 set and preprocess it to 64x64 frames."""
    raw, pre = root / "raw", root / "pre"
    subprocess.run([sys.executable, "-m", "dataset.synthetic", "--format", "phoenix2014", "--out",
                    str(raw), "--size", "tiny", "--seed", "0"], cwd=REPO_ROOT, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "preprocess/dataset_preprocess.py", "--dataset-root", str(raw),
                    "--output-dir", str(pre), "--output-res", "64x64px", "--process-image"],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    return {"raw": raw, "pre": pre}


def tiny_config(data: dict[str, Path], work_dir: Path, **overrides) -> dict:
    """A complete config for a tiny model on the tiny dataset (CPU, no workers, no progress bar)."""
    cfg = {
        "base": str(REPO_ROOT / "config" / "baseline.yaml"),
        "work_dir": str(work_dir),
        "device": "cpu",
        "num_epoch": 2,
        "batch_size": 2,
        "test_batch_size": 2,
        "num_worker": 0,
        "log_interval": 0,
        "progress_bar": False,
        "tensorboard": False,
        "eval_interval": 1,
        "save_interval": 1,
        "dataset_info": {"dataset_root": str(data["raw"]),
                         "dict_path": str(data["pre"] / "gloss_dict.npy")},
        # Clips shorter than temporal_min_len are resampled to it: every training clip has 16 frames.
        "feeder_args": {"input_size": 32, "frames_res": "64x64px", "temporal_min_len": 16},
        "model": "tests.train_support.NoDropoutSLRModel",
        "decode": {"mode": "max"},
        "model_args": {"c2d_type": "resnet18", "base_width": 4, "hidden_size": 16, "aux_dim": 8,
                       "channels_last": False, "pretrained": "none"},
        "optimizer_args": {"base_lr": 0.001, "step": [1]},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_config(cfg: dict, path: Path) -> Path:
    """Write `cfg` as YAML and return its path."""
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def model_state(path: Path) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint file."""
    return torch.load(path, map_location="cpu", weights_only=True)["model_state_dict"]


@register_model
class StatsDumpSLRModel(NoDropoutSLRModel):
    """Saves, per process, its BatchNorm statistics after each training forward and at the first
    evaluation forward, into $STFNET_TEST_DUMP (train_rank<r>.pt / eval_rank<r>.pt)."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        folder = os.environ.get("STFNET_TEST_DUMP")
        if folder:
            path = Path(folder) / f"{'train' if self.training else 'eval'}_rank{os.environ.get('RANK', '0')}.pt"
            if self.training or not path.exists():
                torch.save({k: v.detach().clone() for k, v in self.state_dict().items()
                            if "running_" in k}, path)
        return out


@register_model
class WeightsDumpSLRModel(NoDropoutSLRModel):
    """Saves, per process, all its weights and buffers at every training forward (before that
    step's update) into $STFNET_TEST_DUMP (rank<r>_forward<n>.pt), so processes can be compared."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.forwards = 0

    def forward(self, *args, **kwargs):
        folder = os.environ.get("STFNET_TEST_DUMP")
        if folder and self.training:
            self.forwards += 1
            path = Path(folder) / f"rank{os.environ.get('RANK', '0')}_forward{self.forwards}.pt"
            torch.save({k: v.detach().clone() for k, v in self.state_dict().items()}, path)
        return super().forward(*args, **kwargs)


def make_feeder(prefix: str, gloss_dict: dict, dataset: str, **settings) -> BaseFeeder:
    """A BaseFeeder of the dataset named `dataset` whose feeder_args are the recipe's with the
    `settings` that are feeder_args; the other settings (mode, info_dir, ...) go to the constructor."""
    keys = set(default_config()["feeder_args"])
    options = FeederOptions.recipe(**{k: v for k, v in settings.items() if k in keys})
    return BaseFeeder(prefix, gloss_dict, dataset_spec(dataset), options,
                      **{k: v for k, v in settings.items() if k not in keys})
