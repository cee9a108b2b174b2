"""The original Conv3d formulation of the frame backbone and hierarchical branch, for checks only.

The published code runs the per-frame ResNet as Conv3d layers with (1, k, k) kernels on
(B, C, T, H, W) clips. This module rebuilds that formulation, independently of the fast 2-D
one, with the same parameter names, so that tests and bench/model_step.py can compare both on
the same weights. `conv3d_reference(model)` returns a copy of an SLRModel running this way.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv(cin: int, cout: int, kernel: tuple[int, int, int], stride: int = 1, groups: int = 1,
          bias: bool = False) -> nn.Conv3d:
    """Conv3d with 'same' padding and a spatial stride."""
    padding = tuple(k // 2 for k in kernel)
    return nn.Conv3d(cin, cout, kernel, stride=(1, stride, stride), padding=padding, groups=groups,
                     bias=bias)


class _ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Conv3d(channels, channels // reduction, 1, bias=False),
                                nn.ReLU(inplace=True),
                                nn.Conv3d(channels // reduction, channels, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        gate = self.fc(F.adaptive_avg_pool3d(x, 1)) + self.fc(F.adaptive_max_pool3d(x, 1))
        return x * torch.sigmoid(gate)


class _SpatialAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = _conv(2, 1, (1, 7, 7))

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True)[0]], 1)
        return x * torch.sigmoid(self.conv(pooled))


class _Fusion(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.fusion_weights = nn.Parameter(torch.ones(2))
        self.t_conv = nn.ModuleList([
            nn.Sequential(_conv(c, c, (k, 1, 1), groups=c), nn.BatchNorm3d(c), nn.ReLU(inplace=True))
            for k in (3, 5)])
        self.cbam = nn.Sequential(_ChannelAttention(c), _SpatialAttention())
        self.st_conv = nn.Sequential(
            _conv(2 * c, 2 * c, (3, 1, 1), groups=2 * c), nn.BatchNorm3d(2 * c), nn.ReLU(inplace=True),
            _conv(2 * c, c, (1, 3, 3), groups=c), nn.BatchNorm3d(c))

    def forward(self, x: Tensor) -> Tensor:
        t = self.fusion_weights[0] * self.t_conv[0](x) + self.fusion_weights[1] * self.t_conv[1](x)
        return x + self.st_conv(torch.cat([x, self.cbam(t)], 1))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv(cin, cout, (1, 3, 3), stride)
        self.bn1 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(cout, cout, (1, 3, 3))
        self.bn2 = nn.BatchNorm3d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(_conv(cin, cout, (1, 1, 1), stride), nn.BatchNorm3d(cout))

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + residual)


class Conv3dResNet(nn.Module):
    """The original backbone on (B, C, T, H, W); stage outputs stay 5-D."""

    def __init__(self, depths: Sequence[int], base_width: int = 64) -> None:
        super().__init__()
        w = [base_width * 2 ** i for i in range(4)]
        self.conv1 = _conv(3, base_width, (1, 7, 7), stride=2)
        self.bn1 = nn.BatchNorm3d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        stages = []
        cin = base_width
        for i, (width, depth) in enumerate(zip(w, depths)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(_Block(cin, width, stride),
                                        *(_Block(width, width, 1) for _ in range(depth - 1))))
            cin = width
        self.layer1, self.layer2 = stages[0], stages[1]
        self.shift1 = _Fusion(w[1])
        self.layer3 = stages[2]
        self.shift2 = _Fusion(w[2])
        self.alpha = nn.Parameter(torch.zeros(3))
        self.layer4 = stages[3]
        self.shift3 = _Fusion(w[3])

    def forward(self, video: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(B, T, 3, H, W) -> framewise (B, C, T) and the four 5-D stage outputs."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(video.permute(0, 2, 1, 3, 4)))))
        res = []
        x = self.layer1(x)
        res.append(x)
        x = self.layer2(x)
        res.append(x)
        x = x + self.shift1(x) * self.alpha[0]
        x = self.layer3(x)
        res.append(x)
        x = x + self.shift2(x) * self.alpha[1]
        x = self.layer4(x)
        res.append(x)
        x = x + self.shift3(x) * self.alpha[2]
        b, c, t = x.shape[:3]
        frames = x.transpose(1, 2).reshape(b * t, c, *x.shape[3:])
        # AvgPool2d(7) of the original on 7x7 maps; global average on other sizes.
        framewise = F.adaptive_avg_pool2d(frames, 1).view(b, t, c).permute(0, 2, 1)
        return framewise, res


class _TemporalGate(nn.Module):
    def __init__(self, c: int, groups: int) -> None:
        super().__init__()
        self.temporal_att = nn.Sequential(
            nn.Conv3d(c, c // 4, (3, 1, 1), padding=(1, 0, 0), groups=groups, bias=False),
            nn.BatchNorm3d(c // 4), nn.ReLU(inplace=True),
            nn.Conv3d(c // 4, c, (3, 1, 1), padding=(1, 0, 0), groups=groups, bias=False),
            nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.temporal_att(x)


class Conv3dHSA(nn.Module):
    """The original hierarchical branch on 5-D stage outputs; shares `tcn_layers` and `fc` layout."""

    def __init__(self, fast: nn.Module, base_width: int) -> None:
        super().__init__()
        c = 8 * base_width
        self.attention = fast.attention

        def project(cin: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv3d(cin, c, 1), nn.BatchNorm3d(c), nn.ReLU(inplace=True))

        self.conv1, self.conv2, self.conv3 = (project(base_width), project(2 * base_width),
                                              project(4 * base_width))
        if self.attention:
            self.stf1 = _TemporalGate(c, max(1, c // 4))
            self.stf2 = _TemporalGate(c, max(1, c // 8))
            self.stf3 = _TemporalGate(c, max(1, c // 16))
        self.tcn_layers = copy.deepcopy(fast.tcn_layers)
        self.fc = copy.deepcopy(fast.fc)

    def forward(self, res: Sequence[Tensor], batch: int) -> list[Tensor]:
        b, _, t = res[1].shape[:3]
        multi = [self.conv2(res[1]), self.conv3(res[2]), res[3]]
        if self.attention:
            multi = [self.stf1(multi[0]), self.stf2(multi[1]), self.stf3(multi[2])]
        out = []
        for i, x in enumerate(multi):
            if i < 2:
                x = F.adaptive_avg_pool3d(x, (None, 7, 7))
            frames = x.transpose(1, 2).reshape(b * t, *x.shape[1:2], *x.shape[3:])
            pooled = F.adaptive_avg_pool2d(frames, 1).view(b * t, -1)
            out.append(self.tcn_layers(self.fc(pooled).view(b, t, -1).permute(0, 2, 1)))
        return out


def conv3d_reference(model: nn.Module) -> nn.Module:
    """A deep copy of `model` (an SLRModel) whose backbone and branch run the Conv3d formulation."""
    ref = copy.deepcopy(model)
    base_width = model.conv2d.conv1.out_channels
    depths = [len(getattr(model.conv2d, f"layer{i}")) for i in range(1, 5)]
    like = next(model.parameters())
    ref.conv2d = Conv3dResNet(depths, base_width).to(like)
    ref.csa = Conv3dHSA(model.csa, base_width).to(like)
    ref.conv2d.out_channels = model.conv2d.out_channels
    ref.load_state_dict(model.state_dict(), strict=True)
    return ref
