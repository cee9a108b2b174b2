"""Hierarchical branch (HSA; `csa.*` in checkpoints): auxiliary CTC features from ResNet stages 2-4.

Stage maps arrive as (B*T, C, H, W) frames. Layer-2/3 maps are projected to the layer-4 width,
optionally gated by a hierarchical temporal attention, pooled to one vector per frame, mapped by a
shared Linear and a shared temporal conv/pool stack to (B, hidden, T') sequences.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modules.batchnorm import BatchNorm2d
from modules.frame_conv import FrameConv, FrameSequential, TemporalConv3d
from modules.tconv import kernel_sizes_for

logger = logging.getLogger(__name__)

# Groups of the temporal attention convs per level, as divisors of the channel count.
_ATTENTION_GROUP_DIVISORS = (4, 8, 16)


class HierarchicalTemporalAttention(nn.Module):
    """x * sigmoid(GConv_t(ReLU(BN(GConv_t(x))))), grouped temporal convs C -> C/4 -> C (kernel 3)."""

    takes_batch = True

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        mid = channels // 4
        self.temporal_att = FrameSequential(
            TemporalConv3d(channels, mid, 3, groups=groups),
            BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            TemporalConv3d(mid, channels, 3, groups=groups),
            nn.Sigmoid(),
        )

    def forward(self, frames: Tensor, batch: int) -> Tensor:
        """Gate every (channel, frame, pixel) by its temporal context."""
        return frames * self.temporal_att(frames, batch)


def _project(in_channels: int, out_channels: int) -> FrameSequential:
    """1x1 conv (with bias) + BatchNorm + ReLU."""
    return FrameSequential(FrameConv(in_channels, out_channels, 1, bias=True),
                           BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def temporal_stack(kernel_sizes: Sequence[str], in_channels: int, hidden_size: int) -> nn.Sequential:
    """Conv1d(k)+BN+ReLU for each 'Kk', MaxPool1d(p) for each 'Pp' (`csa.tcn_layers`)."""
    layers: list[nn.Module] = []
    for spec in kernel_sizes:
        size = int(spec[1:])
        if spec[0] == "K":
            layers += [nn.Conv1d(in_channels, hidden_size, size), nn.BatchNorm1d(hidden_size),
                       nn.ReLU(inplace=True)]
            in_channels = hidden_size
        else:
            layers.append(TemporalMaxPool(size))
    return nn.Sequential(*layers)


class TemporalMaxPool(nn.MaxPool1d):
    """nn.MaxPool1d(k) over (N, C, T), run as a (1, k) max_pool2d: the same values and gradients
    (first maximum wins a tie), and the time length stays symbolic under torch.compile, where
    max_pool1d's composite kernel specialises it (a recompile for every length)."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__(kernel_size)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """Pool time by `kernel_size` (floor: a last incomplete window is dropped)."""
        k = self.kernel_size
        return F.max_pool2d(x.unsqueeze(-2), (1, k), (1, k)).squeeze(-2)


class HierarchicalBranch(nn.Module):
    """The HSA branch: `forward(stages, batch) -> 3 tensors (B, hidden_size, T')`.

    `channels` is the layer-4 width (512 published); `base_width` the layer-1 width. With
    `attention=False` (the published PHOENIX-2014-T model) the `stf*` gates are absent and their
    weights, if a checkpoint has them, are ignored on load (logged).
    """

    def __init__(self, base_width: int = 64, aux_dim: int = 1000, hidden_size: int = 1024,
                 conv_type: int = 2, attention: bool = True) -> None:
        super().__init__()
        channels = 8 * base_width
        self.attention = attention
        # Unused by the published forward but present in its checkpoints: kept to load them.
        self.conv1 = _project(base_width, channels)
        self.conv2 = _project(2 * base_width, channels)
        self.conv3 = _project(4 * base_width, channels)
        if attention:
            for level, divisor in enumerate(_ATTENTION_GROUP_DIVISORS, start=1):
                groups = max(1, channels // divisor)
                self.add_module(f"stf{level}", HierarchicalTemporalAttention(channels, groups))
        else:
            self.register_load_state_dict_pre_hook(_drop_attention_weights)
        self.tcn_layers = temporal_stack(kernel_sizes_for(conv_type), aux_dim, hidden_size)
        self.fc = nn.Linear(channels, aux_dim)

    def forward(self, stages: Sequence[Tensor], batch: int) -> list[Tensor]:
        """Auxiliary sequences from layer2, layer3 and layer4 (the latter used as is)."""
        levels = [self.conv2(stages[1], batch), self.conv3(stages[2], batch), stages[3]]
        pooled = []
        for level, frames in enumerate(levels, start=1):
            if self.attention:
                frames = getattr(self, f"stf{level}")(frames, batch)
            pooled.append(_pool_level(frames, adaptive=level < 3))
        # The three levels share `fc` and `tcn_layers`: run them once on the levels stacked along
        # the batch (one weight read, one weight gradient, and batched convs take oneDNN's fast
        # path instead of the batch-1 im2col one), but keep BatchNorm per level, as the original
        # (batch statistics and running-stat updates level by level).
        feats = self.fc(torch.cat(pooled)).unflatten(0, (len(levels) * batch, -1)).transpose(1, 2)
        return list(_per_level_stack(self.tcn_layers, feats, len(levels)))


def _per_level_stack(stack: nn.Sequential, feats: Tensor, levels: int) -> tuple[Tensor, ...]:
    """Run `stack` on (levels * B, C, T) feats, its BatchNorms on each level's chunk apart."""
    for layer in stack:
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            feats = torch.cat([layer(chunk) for chunk in feats.chunk(levels)])
        else:
            feats = layer(feats)
    return feats.chunk(levels)


def _pool_level(frames: Tensor, adaptive: bool) -> Tensor:
    """One vector per frame: the original's 7x7 adaptive pool then mean (layers 2, 3) or mean."""
    height, width = frames.shape[2:]
    if adaptive and (height % 7 or width % 7):
        # The original weights overlapping 7x7 bins unless H and W are multiples of 7: keep its
        # two steps there. With multiples of 7 (224 input) the bins are equal and disjoint, so the
        # mean of bin means is the global mean: one pass, and no adaptive-pool backward (which
        # also copies channels-last maps to contiguous ones).
        frames = F.adaptive_avg_pool2d(frames, 7)
    return frames.mean(dim=(2, 3))


def _drop_attention_weights(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Load hook: drop `stf*` weights a checkpoint may hold when the attention is switched off."""
    dropped = [key for key in state_dict if key.startswith(prefix + "stf")]
    for key in dropped:
        del state_dict[key]
    if dropped:
        logger.info("hsa_attention is off: ignoring %d hierarchical attention weights (%sstf*) "
                    "of the checkpoint", len(dropped), prefix)
