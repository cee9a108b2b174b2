"""Temporal lift pooling (`conv1d.temporal_conv.{1,3}` in checkpoints): a learnt 2x temporal pool.

Even frames predict odd ones (detail d = odd - P(even)) and are updated by the detail
(s = even + U(d)); the output W1(s) + W2(d) halves the length. ||s - odd|| and ||d|| are returned
as regularisation losses, both taken over the whole padded batch as the original does.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def _lifting_step(channels: int) -> nn.Sequential:
    """Depthwise conv k3 + ReLU + pointwise conv (zero weight: starts as tanh(bias)) + Tanh."""
    pointwise = nn.Conv1d(channels, channels, kernel_size=1)
    nn.init.zeros_(pointwise.weight)
    return nn.Sequential(nn.Conv1d(channels, channels, kernel_size=3, padding=1, groups=channels),
                         nn.ReLU(inplace=True), pointwise, nn.Tanh())


class LocalWeighting(nn.Module):
    """x + x * (sigmoid(InstanceNorm(conv_k5(x))) - 0.5): a per-frame gain in [0.5, 1.5]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size=5, padding=2)
        nn.init.zeros_(self.conv.weight)
        self.insnorm = nn.InstanceNorm1d(channels, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        """Reweight each frame of (B, C, T) by its local context."""
        return x + x * (torch.sigmoid(self.insnorm(self.conv(x))) - 0.5)


class TemporalLiftPool(nn.Module):
    """`forward(x (B, C, T)) -> (y (B, C, T // 2), loss_u, loss_p)`."""

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.predictor = _lifting_step(channels)
        self.updater = _lifting_step(channels)
        self.weight1 = LocalWeighting(channels)
        self.weight2 = LocalWeighting(channels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Pool time by `kernel_size`; an odd last frame is dropped (floor, like the lengths)."""
        k = self.kernel_size  # both slices hold T // k frames; no shape arithmetic, so an ONNX
        even = x[:, :, 0:1 - k:k]  # export keeps the time dimension dynamic
        odd = x[:, :, 1:(2 - k) or None:k]
        detail = odd - self.predictor(even)
        smooth = even + self.updater(detail)
        loss_u = torch.linalg.vector_norm(smooth - odd)
        loss_p = torch.linalg.vector_norm(detail)
        return self.weight1(smooth) + self.weight2(detail), loss_u, loss_p
