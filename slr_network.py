"""STF-Net for continuous sign language recognition: the published network and its losses.

    frames -> ResNet + spatio-temporal fusion (conv2d) -> temporal convs + lift pooling (conv1d)
           -> BiLSTM (temporal_model) -> shared NormLinear classifier
    ResNet stages 2-4 -> hierarchical branch (csa) -> three auxiliary CTC heads (same classifier)

Parameter names and shapes are those of the published checkpoints.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from modules.bilstm import BiLSTMLayer
from modules.classifier import make_classifier
from modules.criterions import SeqKD, ctc_per_sample
from modules.frame_conv import store_frame_weights_channels_last
from modules.hsa import HierarchicalBranch
from modules.resnet import ResNet, resnet_depths
from modules.tconv import TemporalConv, kernel_sizes_for, output_lengths
from utils.errors import ConfigError, closest_key
from utils.pretrained import load_imagenet_resnet
from utils.registry import Registry

# The models a config's (or checkpoint's) `model` key may name; a user's model joins with
# @register_model in their own module, imported by their own launcher script.
MODELS = Registry("model", "model")
register_model = MODELS.register


@register_model
class SLRModel(nn.Module):
    """The STF-Net model; `forward(x, len_x)` returns the dict described in `forward`.

    `loss_names` are the terms `loss_weights` (the config's section) may weight; a subclass whose
    `loss_terms` adds a term extends it to take that term's weight from the config.

    Args (beyond the original ones; its `use_bn`, which nothing read, is gone: utils.config.MOVED_KEYS
    drops it from old checkpoints and names it in configs):
        hsa_attention: temporal attention in the hierarchical branch (on for PHOENIX-2014,
            off for the published PHOENIX-2014-T model).
        base_width: ResNet width (64 published); frame features have 8 * base_width channels.
        aux_dim: width of the hierarchical branch's shared Linear (1000 published).
        pretrained: ImageNet init of the ResNet: 'none'/None (random), 'imagenet' (torchvision's
            weights from torch's hub cache, fetched there once), or a torchvision-format file.
        channels_last: run the frame backbone and branch in channels-last memory; None (default)
            = on (measured faster for oneDNN training on CPU and for cuDNN), False = off. Its
            CPU batch norms keep float64-grade statistics (modules.batchnorm).
    """

    loss_names: tuple[str, ...] = ("SeqCTC", "ConvCTC", "Dist", "Cu", "Cp")

    def __init__(self, num_classes: int, c2d_type: str, conv_type: int, *,
                 hidden_size: int = 1024, loss_weights: Mapping[str, float] | None = None,
                 weight_norm: bool = True,
                 share_classifier: bool = True, hsa_attention: bool = True,
                 base_width: int = 64, aux_dim: int = 1000, pretrained: str | bool | None = None,
                 channels_last: bool | None = None) -> None:
        super().__init__()
        self.num_classes = checked_num_classes(num_classes)
        self.loss_weights = checked_loss_weights(loss_weights, self.loss_names)
        self.kernel_sizes = kernel_sizes_for(conv_type)
        self.conv2d = ResNet(resnet_depths(c2d_type), base_width, channels_last)
        feature_dim = self.conv2d.out_channels
        conv_fc = make_classifier(hidden_size, num_classes, weight_norm)
        self.conv1d = TemporalConv(feature_dim, hidden_size, conv_type, fc=conv_fc)
        self.temporal_model = BiLSTMLayer(hidden_size, hidden_size, num_layers=2, bidirectional=True)
        self.csa = HierarchicalBranch(base_width, aux_dim, hidden_size, conv_type, hsa_attention)
        if channels_last is not False:  # its temporal gates see the backbone's channels-last maps
            store_frame_weights_channels_last(self.csa)
        # Registered after the others so that the state dict lists keys in the published order.
        self.classifier = conv_fc if share_classifier else make_classifier(hidden_size, num_classes,
                                                                           weight_norm)
        self.distillation = SeqKD(temperature=8)
        load_imagenet_resnet(self.conv2d, c2d_type, pretrained)

    def forward(self, x: Tensor, len_x: Tensor, label: Tensor | None = None,
                label_lgt: Tensor | None = None) -> dict[str, Any]:
        """Run the network on videos (B, T, 3, H, W) or frame features (B, C, T).

        Returns feat_len (B,) (CPU), conv_logits / sequence_logits (T', B, classes), aux_logits
        (alias res2: 3 x (T', B, classes), [] for features), loss_LiftPool_u / _p (scalars),
        framewise_features (B, C, T) and visual_features (T', B, hidden). Decoding the logits
        into glosses happens outside the model (decoding.decoder.Decoder).
        """
        len_x = self._checked_lengths(x, len_x)
        if x.dim() == 5:
            framewise, stages = self.conv2d(x)
            aux = self.csa(stages, x.shape[0])
        else:
            framewise, aux = x, []
        conv = self.conv1d(framewise, len_x)
        feat_len = conv["feat_len"]
        if torch.compiler.is_compiling():  # the eager tail last: the compiled graph ends before it
            aux_logits = self._aux_logits(aux)
            sequence = self._sequence_logits(conv["visual_feat"], feat_len)
        else:  # the original's order, which sets the order the shared classifier's gradients add up
            sequence = self._sequence_logits(conv["visual_feat"], feat_len)
            aux_logits = self._aux_logits(aux)
        return {
            "feat_len": feat_len,
            "conv_logits": conv["conv_logits"],
            "sequence_logits": sequence,
            "aux_logits": aux_logits,
            "res2": aux_logits,
            "loss_LiftPool_u": conv["loss_LiftPool_u"],
            "loss_LiftPool_p": conv["loss_LiftPool_p"],
            "framewise_features": framewise,
            "visual_features": conv["visual_feat"],
        }

    def loss_terms(self, outputs: Mapping[str, Any], labels: Tensor,
                   label_lengths: Tensor) -> dict[str, Tensor]:
        """The weighted scalar loss terms, in `loss_weights` order; the loss is their sum.

        Override this to change the loss (add a term, reweight or replace one): the trainer
        trains `modules.criterions.total_loss` of what it returns and logs every term by name
        (log.txt, metrics.csv). SeqCTC brings the three auxiliary CTC terms (weight 1) as
        `AuxCTC{0,1,2}`.
        """
        weights = usable_loss_weights(self, self.loss_weights)
        ctc = batch_ctc(outputs, labels, label_lengths)
        terms: dict[str, Tensor] = {}
        for name, weight in weights.items():
            if name in FAMILY_TERMS:
                terms[name] = weight * family_term(name, outputs, ctc, self.distillation)
                if name == "SeqCTC":
                    for i, logits in enumerate(outputs["aux_logits"]):
                        terms[f"AuxCTC{i}"] = ctc(logits)  # weight 1, as the original
            elif name == "Cu":
                terms[name] = weight * outputs["loss_LiftPool_u"]
            elif name == "Cp":
                terms[name] = weight * outputs["loss_LiftPool_p"]
        return terms

    def _checked_lengths(self, x: Tensor, len_x: Tensor) -> Tensor:
        """Validate the input shape and lengths; lengths as a CPU int64 tensor."""
        return checked_lengths(x, len_x, self.conv2d.out_channels, self.kernel_sizes)

    # Eager under torch.compile, as the last tensor work of `forward`: Dynamo traces neither
    # nn.LSTM nor pack_padded_sequence (the graph would break inside anyway) and inductor has
    # nothing to fuse there, so the compiled graph ends cleanly before it and nothing after it
    # is compiled again for every new length.
    @torch.compiler.disable
    def _sequence_logits(self, visual: Tensor, feat_len: Tensor) -> Tensor:
        """BiLSTM over the temporal stack's (T', B, H) features, then the shared classifier."""
        return self.classifier(self.temporal_model(visual, feat_len))

    def _aux_logits(self, aux: list[Tensor]) -> list[Tensor]:
        """The shared classifier over each hierarchical-branch output (B, hidden, T') -> (T', B, classes)."""
        return [self.classifier(a.permute(2, 0, 1)) for a in aux]


# The loss terms the family's models share (VAC named ConvCTC its visual enhancement loss and
# Dist its visual alignment loss; STF-Net and CorrNet kept both).
FAMILY_TERMS = ("SeqCTC", "ConvCTC", "Dist")


def family_term(name: str, outputs: Mapping[str, Any], ctc: Callable[[Tensor], Tensor],
                distillation: SeqKD) -> Tensor:
    """One unweighted shared term: CTC of the BiLSTM's or the temporal stack's logits, or the
    distillation of the BiLSTM's logits (teacher, detached) into the temporal stack's."""
    if name == "SeqCTC":
        return ctc(outputs["sequence_logits"])
    if name == "ConvCTC":
        return ctc(outputs["conv_logits"])
    if name == "Dist":
        return distillation(outputs["conv_logits"], outputs["sequence_logits"].detach(),
                            use_blank=False)
    raise ValueError(f"{name!r} is not one of the shared loss terms {FAMILY_TERMS}")


def batch_ctc(outputs: Mapping[str, Any], labels: Tensor,
              label_lengths: Tensor) -> Callable[[Tensor], Tensor]:
    """logits (T', B, classes) -> the batch's mean CTC loss, at the output lengths `feat_len`."""
    def ctc(logits: Tensor) -> Tensor:
        return ctc_per_sample(logits, labels, outputs["feat_len"], label_lengths).mean()
    return ctc


def usable_loss_weights(model: nn.Module, loss_weights: dict[str, float] | None) -> dict[str, float]:
    """The model's loss weights, or an error saying how to give them."""
    if loss_weights is None:
        raise RuntimeError(f"this {type(model).__name__} was built without loss_weights; pass e.g. "
                           "{'SeqCTC': 1.0, 'ConvCTC': 1.0, 'Dist': 25.0} to compute losses")
    if not loss_weights:
        raise ConfigError(f"loss_weights is empty: name at least one of {list(model.loss_names)}")
    return loss_weights


@torch.compiler.disable  # host-side checks of the lengths: keep them out of compiled graphs
def checked_lengths(x: Tensor, len_x: Tensor, feature_dim: int, kernel_sizes: list[str]) -> Tensor:
    """Validate videos (B, T, 3, H, W) or features (B, feature_dim, T) and their lengths for a
    temporal stack; the lengths as a CPU int64 tensor."""
    if x.dim() == 5:
        if x.shape[2] != 3:
            raise ValueError(f"videos must be (B, T, 3, H, W), got {tuple(x.shape)}")
        time = x.shape[1]
    elif x.dim() == 3:
        if x.shape[1] != feature_dim:
            raise ValueError(f"frame features must be (B, {feature_dim}, T), got "
                             f"{tuple(x.shape)}")
        time = x.shape[2]
    else:
        raise ValueError(f"x must be videos (B, T, 3, H, W) or features (B, C, T), got "
                         f"{tuple(x.shape)}")
    len_x = torch.as_tensor(len_x).cpu().long()
    if len_x.shape != (x.shape[0],):
        raise ValueError(f"len_x must have one length per sample ({x.shape[0]}), got shape "
                         f"{tuple(len_x.shape)}")
    if int(len_x.max()) > time or int(len_x.min()) < 1:
        raise ValueError(f"len_x {len_x.tolist()} must lie in 1..{time} (the padded length)")
    left = output_lengths(len_x, kernel_sizes)
    if int(left.min()) < 1:
        raise ValueError(f"input lengths {len_x.tolist()} are too short for the temporal stack "
                         f"{kernel_sizes}: they leave {left.tolist()} frames")
    return len_x


def checked_num_classes(num_classes: int) -> int:
    """`num_classes`, if it counts at least one gloss and the CTC blank."""
    if num_classes < 2:
        raise ValueError(f"num_classes must count the glosses plus the CTC blank, got {num_classes}")
    return num_classes


def checked_loss_weights(loss_weights: Mapping[str, float] | None,
                          known: tuple[str, ...]) -> dict[str, float] | None:
    """Loss weights as a dict, refusing (as a config error, with the closest name) terms the model
    does not compute."""
    if loss_weights is None:
        return None
    for name in loss_weights:
        if name not in known:
            raise ConfigError(f"unknown key 'loss_weights.{name}'{closest_key(name, known)} "
                              f"(this model computes {', '.join(known)})")
    return {name: float(weight) for name, weight in loss_weights.items()}
