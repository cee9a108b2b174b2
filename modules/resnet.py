"""Frame backbone: ResNet-18/34 of BasicBlocks with a temporal block after layers 2-4.

Runs on (B*T, C, H, W) frames with 2-D convolutions; the parameters keep the 5-D shapes of the
original Conv3d formulation (`conv2d.*` in the published checkpoints). The block is STF-Net's
spatio-temporal fusion (`shift1..3`) by default, CorrNet's correlation (`corr1..3`), or none
with torchvision's 4-D weights (VAC).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from modules.batchnorm import BatchNorm2d
from modules.frame_conv import FrameConv, FrameConv2d, store_frame_weights_channels_last
from modules.fusion import SpatioTemporalFusion
from utils.errors import ConfigError


def resnet_depths(arch: str) -> tuple[int, int, int, int]:
    """Blocks per stage of a BasicBlock ResNet ('resnet18' or 'resnet34')."""
    depths = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
    if arch not in depths:
        raise ConfigError(f"model_args.c2d_type: unknown c2d_type {arch!r}: the backbones are {sorted(depths)}")
    return depths[arch]


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 conv: type[nn.Module] = FrameConv) -> None:
        super().__init__()
        self.conv1 = conv(inplanes, planes, 3, stride=stride, padding=1)
        self.bn1 = BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(planes, planes, 3, padding=1)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(conv(inplanes, planes, 1, stride=stride),
                                            BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Per-frame ResNet whose layers 2-4 are followed by `x + alpha[i] * fusion_i(x)`.

    `fusion(channels)` builds the block (`forward(frames, batch)`), registered as
    `<fusion_name>1..3`; `fusion=None` builds the plain ResNet (no blocks, no alpha) and
    `conv2d_weights=True` stores its conv weights 4-D, as torchvision does.

    `forward(video (B, T, 3, H, W)) -> (framewise (B, 8w, T), [layer1..layer4 outputs])`, the
    layer outputs as (B*T, C, H, W) frames taken before the fusion is added (w = base_width).
    `channels_last` (None = on): frames channels-last, which oneDNN (CPU) and cuDNN both run
    faster; the frame-conv weights are then stored channels-last-3d to match (see
    modules.frame_conv.store_frame_weights_channels_last).
    """

    def __init__(self, depths: Sequence[int], base_width: int = 64,
                 channels_last: bool | None = None, *,
                 fusion: Callable[[int], nn.Module] | None = SpatioTemporalFusion,
                 fusion_name: str = "shift", conv2d_weights: bool = False) -> None:
        super().__init__()
        if len(depths) != 4:
            raise ValueError(f"ResNet needs 4 stage depths, got {list(depths)}")
        widths = [base_width * 2 ** i for i in range(4)]
        conv = FrameConv2d if conv2d_weights else FrameConv
        self.channels_last = channels_last
        self.out_channels = widths[3]
        self.fusion_names = [f"{fusion_name}{i}" for i in (1, 2, 3)] if fusion else []
        self.conv1 = conv(3, base_width, 7, stride=2, padding=3)
        self.bn1 = BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # Registered in the published order: layer1, layer2, block1, layer3, block2, alpha,
        # layer4, block3.
        for i, (planes, depth, stride) in enumerate(zip(widths, depths, (1, 2, 2, 2))):
            inplanes = base_width if i == 0 else widths[i - 1]
            if i == 3 and fusion:
                # Zero start: training begins from the plain (ImageNet) ResNet and learns the blocks.
                self.alpha = nn.Parameter(torch.zeros(3))
            setattr(self, f"layer{i + 1}", _make_stage(inplanes, planes, depth, stride, conv))
            if i > 0 and fusion:
                setattr(self, self.fusion_names[i - 1], fusion(planes))
        self.reset_parameters()
        if channels_last is not False:
            store_frame_weights_channels_last(self)

    def reset_parameters(self) -> None:
        """The original init: Kaiming-normal (fan-out) convs, unit/zero BatchNorm."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, video: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Frame features (B, C, T) and the four stage outputs as (B*T, C, H, W) frames."""
        if video.dim() != 5 or video.shape[2] != 3:
            raise ValueError(f"expected a video batch (B, T, 3, H, W), got {tuple(video.shape)}")
        batch = video.shape[0]
        x = video.flatten(0, 1)
        if self.channels_last is not False:  # None = default = on (measured faster, CPU and CUDA)
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            stages.append(x)
            if i > 0 and self.fusion_names:
                x = x + self.alpha[i - 1] * getattr(self, self.fusion_names[i - 1])(x, batch)
        # Global average = the original AvgPool2d(7) at 224x224 input (7x7 maps); adapts to others.
        framewise = x.mean(dim=(2, 3)).unflatten(0, (batch, -1)).transpose(1, 2)
        return framewise, stages


def _make_stage(inplanes: int, planes: int, blocks: int, stride: int,
                conv: type[nn.Module] = FrameConv) -> nn.Sequential:
    """`blocks` BasicBlocks, the first one with the stride and the projection shortcut."""
    return nn.Sequential(BasicBlock(inplanes, planes, stride, conv),
                         *(BasicBlock(planes, planes, conv=conv) for _ in range(blocks - 1)))


def resnet18(base_width: int = 64, channels_last: bool | None = None) -> ResNet:
    """ResNet-18 frame backbone (random init; see utils.pretrained for ImageNet weights)."""
    return ResNet(resnet_depths("resnet18"), base_width, channels_last)


def resnet34(base_width: int = 64, channels_last: bool | None = None) -> ResNet:
    """ResNet-34 frame backbone (random init; see utils.pretrained for ImageNet weights)."""
    return ResNet(resnet_depths("resnet34"), base_width, channels_last)
