"""Convolutions over a clip stored as a batch of frames, with the published 5-D (Conv3d) weights.

The backbone keeps every clip as a (B*T, C, H, W) batch of frames, so that the per-frame
convolutions (the cost of the network) run as cuDNN / oneDNN 2-D convolutions, in channels-last
memory when asked. The parameters keep the shapes of the original Conv3d layers, so published
checkpoints load unchanged: a (1, k, k) kernel is used as its (k, k) view at call time, and a
temporal (k, 1, 1) kernel as a (k, 1) kernel on a (B, C, T, H*W) view of the frames (a free view
when the frames are channels-last).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FrameConv(nn.Conv3d):
    """A (1, k, k) Conv3d, run as a 2-D convolution on each frame of a (B*T, C, H, W) batch."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, groups: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size=(1, kernel_size, kernel_size),
                         stride=(1, stride, stride), padding=(0, padding, padding), groups=groups,
                         bias=bias)

    def forward(self, frames: Tensor) -> Tensor:  # type: ignore[override]
        """Convolve each frame with the (k, k) view of the stored (O, I, 1, k, k) weight."""
        return frame_conv2d(frames, self.weight.squeeze(2), self.bias, self.stride[1:],
                            self.padding[1:], self.groups)


class FrameConv2d(nn.Conv2d):
    """FrameConv with a 4-D (O, I, k, k) weight: torchvision's layout (VAC's checkpoints)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, groups: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         groups=groups, bias=bias)

    def forward(self, frames: Tensor) -> Tensor:  # type: ignore[override]
        """Convolve each frame of a (N, C, H, W) batch."""
        return frame_conv2d(frames, self.weight, self.bias, self.stride, self.padding, self.groups)


def frame_conv2d(frames: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, ...],
                 padding: tuple[int, ...] | str, groups: int) -> Tensor:
    """F.conv2d, safe for a strided 1x1 conv of channels-last CPU frames (see the comment)."""
    if (tuple(stride) != (1, 1) and weight.shape[2:] == (1, 1) and tuple(padding) == (0, 0)
            and frames.device.type == "cpu"
            and frame_memory_format(frames) == torch.channels_last):
        # oneDNN's weight gradient of a strided 1x1 conv on channels-last CPU frames writes
        # past its buffer (torch 2.13: heap corruption, seen as glibc aborts). A 1x1 conv
        # reads only the pixels its stride lands on: take them, then convolve unstrided
        # (the same products; oneDNN may sum them in another order, a float32 rounding).
        frames, stride = frames[:, :, ::stride[0], ::stride[1]], (1, 1)
    return F.conv2d(frames, weight, bias, stride, padding, 1, groups)


class TemporalConv3d(nn.Conv3d):
    """A (k, 1, 1) Conv3d over time, applied to a (B*T, C, H, W) batch of frames of B clips."""

    takes_batch = True  # FrameSequential passes the clip count to layers that mix frames

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int = 1,
                 bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size=(kernel_size, 1, 1),
                         padding=(kernel_size // 2, 0, 0), groups=groups, bias=bias)

    def forward(self, frames: Tensor, batch: int) -> Tensor:  # type: ignore[override]
        """Convolve along time; frames of different clips never mix (zero padding at clip ends)."""
        # A (k, 1, 1) kernel never mixes pixels, so the clip is a 2-D (B, C, T, H*W) image and
        # the conv a (k, 1) Conv2d: oneDNN runs that 3-6x faster than the grouped Conv3d (which
        # falls back to a slow kernel on CPU), and for channels-last frames the view is free.
        height, width = frames.shape[2:]
        image = frames.unflatten(0, (batch, -1)).flatten(3).transpose(1, 2)
        out = F.conv2d(image, self.weight.flatten(3), self.bias, 1, (self.padding[0], 0), 1,
                       self.groups)
        out = out.transpose(1, 2).unflatten(3, (height, width)).flatten(0, 1)
        # Channels-last frames come back channels-last for free; contiguous ones would come back
        # time-strided, which makes every later BatchNorm / ReLU / conv copy, so copy once here.
        return out.contiguous(memory_format=frame_memory_format(frames))


def frame_memory_format(frames: Tensor) -> torch.memory_format:
    """channels_last if a (N, C, H, W) batch is stored channels-last (and not also contiguous)."""
    if frames.is_contiguous(memory_format=torch.channels_last) and not frames.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def store_frame_weights_channels_last(module: nn.Module) -> None:
    """Store every FrameConv / TemporalConv3d weight channels-last-3d, every FrameConv2d weight
    channels-last (same shape and values).

    Their (k, k) / (k, 1) views are then channels-last 4-D weights, the layout oneDNN wants for
    channels-last frames: without it every conv copies its weight forward and backward, and
    autograd copies each weight gradient back to the parameter's layout.
    """
    for layer in module.modules():
        if isinstance(layer, (FrameConv, TemporalConv3d)):
            layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last_3d)
        elif isinstance(layer, FrameConv2d):
            layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last)


class FrameSequential(nn.Sequential):
    """nn.Sequential over (B*T, C, H, W) frames; layers with `takes_batch` also get the clip count."""

    takes_batch = True

    def forward(self, frames: Tensor, batch: int) -> Tensor:  # type: ignore[override]
        """Apply the layers in order, passing `batch` to the temporal ones."""
        for layer in self:
            frames = layer(frames, batch) if getattr(layer, "takes_batch", False) else layer(frames)
        return frames
