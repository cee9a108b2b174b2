"""CorrNet's block after ResNet layers 2-4 (`conv2d.corr{1,2,3}` in its checkpoints).

The correlation module weighs each frame's features by their affinity with the next and the
previous frame; the identification module (depthwise (9, 3, 3) convs at dilations 1-3, as the
published code's spatial decomposition) gates them. Frames arrive as a (B*T, C, H, W) batch of
`batch` clips; submodule names and the formula follow the published `Get_Correlation`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from modules.frame_conv import frame_memory_format


class Correlation(nn.Module):
    """`forward(frames, batch)` -> correlation features * (sigmoid(identification) - 0.5)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        reduced = channels // reduction
        if reduced < 1:
            raise ValueError(f"Correlation needs channels >= {reduction}, got {channels}")
        self.down_conv = nn.Conv3d(channels, reduced, kernel_size=1, bias=False)
        self.down_conv2 = nn.Conv3d(channels, channels, kernel_size=1, bias=False)
        self.spatial_aggregation1, self.spatial_aggregation2, self.spatial_aggregation3 = (
            nn.Conv3d(reduced, reduced, kernel_size=(9, 3, 3), padding=(4, d, d), dilation=(1, d, d),
                      groups=reduced) for d in (1, 2, 3))
        self.weights = nn.Parameter(torch.ones(3) / 3)
        self.weights2 = nn.Parameter(torch.ones(2) / 2)
        self.conv_back = nn.Conv3d(reduced, channels, kernel_size=1, bias=False)

    def forward(self, frames: Tensor, batch: int) -> Tensor:
        """The block's output for (B*T, C, H, W) frames, as frames."""
        x = frames.unflatten(0, (batch, -1)).transpose(1, 2)  # (B, C, T, H, W)
        x2 = self.down_conv2(x)
        following = torch.cat([x2[:, :, 1:], x2[:, :, -1:]], 2)  # the last frame repeated
        preceding = torch.cat([x2[:, :, :1], x2[:, :, :-1]], 2)  # the first frame repeated
        affinity_next = torch.einsum("bcthw,bctsd->bthwsd", x, following)
        affinity_prev = torch.einsum("bcthw,bctsd->bthwsd", x, preceding)
        features = (torch.einsum("bctsd,bthwsd->bcthw", following,
                                 torch.sigmoid(affinity_next) - 0.5) * self.weights2[0]
                    + torch.einsum("bctsd,bthwsd->bcthw", preceding,
                                   torch.sigmoid(affinity_prev) - 0.5) * self.weights2[1])
        reduced = self.down_conv(x)
        aggregated = (self.spatial_aggregation1(reduced) * self.weights[0]
                      + self.spatial_aggregation2(reduced) * self.weights[1]
                      + self.spatial_aggregation3(reduced) * self.weights[2])
        out = features * (torch.sigmoid(self.conv_back(aggregated)) - 0.5)
        return out.transpose(1, 2).flatten(0, 1).contiguous(memory_format=frame_memory_format(frames))
