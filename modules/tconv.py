"""Temporal stack (`conv1d.*` in checkpoints): 1-D convs and lift pooling (STF-Net) or max
pooling (VAC, CorrNet) over frame features."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from modules.lift_pool import TemporalLiftPool
from utils.errors import ConfigError


def kernel_sizes_for(conv_type: int) -> list[str]:
    """Layer specs of a conv_type: 'Kk' = conv of width k (no padding), 'Pp' = pool by p."""
    specs = {0: ["K3"], 1: ["K5", "P2"], 2: ["K5", "P2", "K5", "P2"]}
    if conv_type not in specs:
        raise ConfigError(f"model_args.conv_type: conv_type must be one of {sorted(specs)} (2 = published "
                          f"K5 P2 K5 P2), got {conv_type!r}")
    return list(specs[conv_type])


def output_lengths(lengths: Tensor, kernel_sizes: Sequence[str]) -> Tensor:
    """Sequence lengths after the stack: 'Kk' subtracts k - 1, 'Pp' floor-divides by p."""
    for spec in kernel_sizes:
        size = int(spec[1:])
        lengths = lengths // size if spec[0] == "P" else lengths - (size - 1)
    return lengths


def runs_on(length: int, kernel_sizes: Sequence[str]) -> bool:
    """Whether the stack runs on `length` (padded) time steps: each pooling keeps at least 2 (the
    lift pool's instance norms normalise over time: 1 step is an error) and 1 output step remains."""
    for spec in kernel_sizes:
        size = int(spec[1:])
        length = length // size if spec[0] == "P" else length - (size - 1)
        if length < (2 if spec[0] == "P" else 1):
            return False
    return True


class TemporalConv(nn.Module):
    """`forward(feats (B, C, T), lengths (B,)) -> dict` of visual_feat (T', B, H), conv_logits
    (T', B, classes), feat_len (B,) on the CPU, and the summed lift-pool losses (zero with
    `pool='max'`, whose flat Sequential has the VAC / CorrNet checkpoints' indices)."""

    def __init__(self, input_size: int, hidden_size: int, conv_type: int = 2,
                 fc: nn.Module | None = None, pool: str = "lift") -> None:
        super().__init__()
        if pool not in ("lift", "max"):
            raise ValueError(f"pool must be 'lift' or 'max', got {pool!r}")
        self.kernel_size = kernel_sizes_for(conv_type)
        layers: list[nn.Module] = []
        channels = input_size
        for spec in self.kernel_size:
            size = int(spec[1:])
            if spec[0] == "P":
                layers.append(TemporalLiftPool(channels, size) if pool == "lift"
                              else nn.MaxPool1d(size))
                continue
            conv = [nn.Conv1d(channels, hidden_size, size), nn.BatchNorm1d(hidden_size),
                    nn.ReLU(inplace=True)]
            layers.extend(conv if pool == "max" else [nn.Sequential(*conv)])
            channels = hidden_size
        self.temporal_conv = nn.Sequential(*layers) if pool == "max" else nn.ModuleList(layers)
        self.fc = fc

    def forward(self, feats: Tensor, lengths: Tensor) -> dict[str, Tensor]:
        """Run the stack, then the classifier (if any) on every output frame."""
        feats, loss_u, loss_p = self.run_layers(feats)
        visual = feats.permute(2, 0, 1)
        return {
            "visual_feat": visual,
            "conv_logits": None if self.fc is None else self.fc(visual),
            "feat_len": output_lengths(lengths.cpu(), self.kernel_size),
            "loss_LiftPool_u": loss_u,
            "loss_LiftPool_p": loss_p,
        }

    def run_layers(self, feats: Tensor, start: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """(B, C, T) through layers `start`.. of the stack: (output, summed loss_u, loss_p).

        `start` > 0 runs the rest of the stack on cached outputs of its first layers
        (inference.streaming)."""
        loss_u = loss_p = feats.new_zeros((), dtype=torch.float32)
        for layer in self.temporal_conv[start:]:
            if isinstance(layer, TemporalLiftPool):
                feats, step_u, step_p = layer(feats)
                loss_u, loss_p = loss_u + step_u, loss_p + step_p
            else:
                feats = layer(feats)
        return feats, loss_u, loss_p
