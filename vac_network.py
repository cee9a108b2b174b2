"""VAC (Min et al., ICCV 2021; github.com/VIPL-SLP/VAC_CSLR), the baseline this family grew from.

    frames -> ResNet (torchvision's, 4-D weights) over each video's real frames only (conv2d)
           -> temporal convs + max pooling (conv1d) -> BiLSTM (temporal_model) -> classifier

Loss terms, weighted from the config: SeqCTC (BiLSTM logits), ConvCTC (the visual enhancement
loss: CTC on the temporal stack's logits) and Dist (the visual alignment loss: the BiLSTM's
logits distilled into the temporal stack's). Parameter names, shapes and order are those of the
published checkpoints; the outputs and losses are the original's (tests/test_family_parity.py).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modules.bilstm import BiLSTMLayer
from modules.classifier import make_classifier
from modules.criterions import SeqKD
from modules.resnet import ResNet, resnet_depths
from modules.tconv import TemporalConv, kernel_sizes_for
from utils.pretrained import load_imagenet_resnet
from slr_network import (batch_ctc, checked_lengths, checked_loss_weights, checked_num_classes,
                         family_term, register_model, usable_loss_weights)


@register_model
class VACModel(nn.Module):
    """The VAC model; `forward(x, len_x)` returns feat_len, conv_logits, sequence_logits,
    framewise_features and visual_features, as SLRModel's.

    The arguments are the original's (less `use_bn`, which nothing read); `base_width`,
    `pretrained` and `channels_last` are SLRModel's (`channels_last`: see `build_backbone`).
    """

    loss_names: tuple[str, ...] = ("SeqCTC", "ConvCTC", "Dist")

    def __init__(self, num_classes: int, c2d_type: str = "resnet18", conv_type: int = 2,
                 *, hidden_size: int = 1024,
                 loss_weights: Mapping[str, float] | None = None, weight_norm: bool = True,
                 share_classifier: bool = True, base_width: int = 64,
                 pretrained: str | bool | None = None, channels_last: bool | None = None) -> None:
        super().__init__()
        self.num_classes = checked_num_classes(num_classes)
        self.loss_weights = checked_loss_weights(loss_weights, self.loss_names)
        self.kernel_sizes = kernel_sizes_for(conv_type)
        self.conv2d = self.build_backbone(resnet_depths(c2d_type), base_width, channels_last)
        conv_fc = make_classifier(hidden_size, num_classes, weight_norm)
        self.conv1d = TemporalConv(self.conv2d.out_channels, hidden_size, conv_type, fc=conv_fc,
                                   pool="max")
        self.temporal_model = BiLSTMLayer(hidden_size, hidden_size, num_layers=2, bidirectional=True)
        self.classifier = conv_fc if share_classifier else make_classifier(hidden_size, num_classes,
                                                                           weight_norm)
        self.distillation = SeqKD(temperature=8)
        load_imagenet_resnet(self.conv2d, c2d_type, pretrained)

    @staticmethod
    def build_backbone(depths: tuple[int, ...], base_width: int,
                       channels_last: bool | None) -> ResNet:
        """torchvision's plain ResNet (`conv2d.*`: 4-D convs, no temporal blocks), contiguous
        unless `channels_last` is True: measured against the original in float64, its float32
        channels-last gradients were 8x less accurate than the original's (contiguous: equal)."""
        return ResNet(depths, base_width, bool(channels_last), fusion=None, conv2d_weights=True)

    def forward(self, x: Tensor, len_x: Tensor, label: Tensor | None = None,
                label_lgt: Tensor | None = None) -> dict[str, Any]:
        """Run the network on videos (B, T, 3, H, W) or frame features (B, C, T)."""
        len_x = checked_lengths(x, len_x, self.conv2d.out_channels, self.kernel_sizes)
        framewise = self.framewise(x, len_x) if x.dim() == 5 else x
        conv = self.conv1d(framewise, len_x)
        feat_len = conv["feat_len"]
        sequence = self.classifier(self.temporal_model(conv["visual_feat"], feat_len))
        return {
            "feat_len": feat_len,
            "conv_logits": conv["conv_logits"],
            "sequence_logits": sequence,
            "framewise_features": framewise,
            "visual_features": conv["visual_feat"],
        }

    def framewise(self, video: Tensor, len_x: Tensor) -> Tensor:
        """(B, C, T) frame features of the real frames (batch norm statistics of those only, the
        original's `masked_bn`), zero past each length."""
        batch, time = video.shape[:2]
        lengths = len_x.tolist()
        if min(lengths) == time:
            return self.conv2d(video)[0]
        real = torch.cat([video[b, :n] for b, n in enumerate(lengths)])
        feats = self.conv2d(real[None])[0][0]  # (C, sum of lengths)
        return torch.stack([F.pad(piece, (0, time - piece.shape[1]))
                            for piece in feats.split(lengths, dim=1)])

    def loss_terms(self, outputs: Mapping[str, Any], labels: Tensor,
                   label_lengths: Tensor) -> dict[str, Tensor]:
        """The weighted scalar loss terms, in `loss_weights` order (see SLRModel.loss_terms)."""
        ctc = batch_ctc(outputs, labels, label_lengths)
        return {name: weight * family_term(name, outputs, ctc, self.distillation)
                for name, weight in usable_loss_weights(self, self.loss_weights).items()}
