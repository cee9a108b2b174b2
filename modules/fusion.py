"""Spatio-temporal fusion block added after ResNet layers 2-4 (`conv2d.shift{1,2,3}` in checkpoints).

Every tensor is a (B*T, C, H, W) batch of frames of `batch` clips; temporal layers see the clips.
Submodule names and Sequential indices follow the published state dict.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from modules.batchnorm import BatchNorm2d
from modules.frame_conv import FrameConv, FrameSequential, TemporalConv3d
from utils.errors import ConfigError


def _temporal_bn_relu(channels: int, kernel_size: int) -> FrameSequential:
    """Depthwise temporal conv + BatchNorm + ReLU (`t_conv.i` in checkpoints)."""
    return FrameSequential(TemporalConv3d(channels, channels, kernel_size, groups=channels),
                           BatchNorm2d(channels), nn.ReLU(inplace=True))


class ChannelAttention(nn.Module):
    """CBAM channel gate: shared 1x1 MLP on the clip's average- and max-pooled (T, H, W) vector."""

    takes_batch = True

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ConfigError(f"ChannelAttention needs channels >= reduction, got {channels} < {reduction}")
        self.fc = nn.Sequential(FrameConv(channels, hidden, 1), nn.ReLU(inplace=True),
                                FrameConv(hidden, channels, 1))

    def forward(self, frames: Tensor, batch: int) -> Tensor:
        """Scale every channel of every clip by sigmoid(MLP(avg) + MLP(max))."""
        clip = frames.unflatten(0, (batch, -1))  # (B, T, C, H, W)
        avg = clip.mean(dim=(1, 3, 4))[:, :, None, None]
        peak = clip.amax(dim=(1, 3, 4))[:, :, None, None]
        gate = torch.sigmoid(self.fc(avg) + self.fc(peak))  # (B, C, 1, 1)
        return (clip * gate[:, None]).flatten(0, 1)


class SpatialAttention(nn.Module):
    """CBAM spatial gate: a 7x7 conv on the channel mean and max of each frame."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = FrameConv(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, frames: Tensor) -> Tensor:
        """Scale every pixel of every frame by sigmoid(conv([mean_c, max_c]))."""
        pooled = torch.cat([frames.mean(dim=1, keepdim=True), frames.amax(dim=1, keepdim=True)], 1)
        return frames * torch.sigmoid(self.conv(pooled))


class SpatioTemporalFusion(nn.Module):
    """Returns x + BN(GroupConv3x3(ReLU(BN(TConv3([x, CBAM(w0*TConv3(x) + w1*TConv5(x))])))))."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.fusion_weights = nn.Parameter(torch.ones(2))
        self.t_conv = nn.ModuleList([_temporal_bn_relu(channels, 3), _temporal_bn_relu(channels, 5)])
        self.cbam = FrameSequential(ChannelAttention(channels, reduction), SpatialAttention())
        self.st_conv = FrameSequential(
            TemporalConv3d(2 * channels, 2 * channels, 3, groups=2 * channels),
            BatchNorm2d(2 * channels),
            nn.ReLU(inplace=True),
            # groups=C pairs channel c of the input with channel c of the temporal features.
            FrameConv(2 * channels, channels, 3, padding=1, groups=channels),
            BatchNorm2d(channels),
        )

    def forward(self, frames: Tensor, batch: int) -> Tensor:
        """Fuse short- and long-range temporal context into (B*T, C, H, W) frames."""
        short, long = (branch(frames, batch) for branch in self.t_conv)
        temporal = self.fusion_weights[0] * short + self.fusion_weights[1] * long
        temporal = self.cbam(temporal, batch)
        return frames + self.st_conv(torch.cat([frames, temporal], dim=1), batch)
