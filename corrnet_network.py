"""CorrNet (Hu et al., CVPR 2023; github.com/hulianyuyy/CorrNet), the code STF-Net forked.

VAC's network (vac_network.VACModel) with CorrNet's ResNet: 5-D (Conv3d) weights and, after
layers 2-4, `x + alpha[i] * corr_i(x)` with the correlation and identification modules
(modules/correlation.py). Unlike VAC it runs the backbone on every frame of the padded batch, as
the original does. Loss terms: SeqCTC, ConvCTC and Dist, weighted from the config.
"""
from __future__ import annotations

from torch import Tensor

from modules.correlation import Correlation
from modules.resnet import ResNet
from slr_network import register_model
from vac_network import VACModel


@register_model
class CorrNetModel(VACModel):
    """The CorrNet model: VACModel's arguments, outputs and loss terms."""

    @staticmethod
    def build_backbone(depths: tuple[int, ...], base_width: int,
                       channels_last: bool | None) -> ResNet:
        """CorrNet's ResNet (`conv2d.*`: 5-D convs, `corr1..3` and `alpha`)."""
        return ResNet(depths, base_width, channels_last, fusion=Correlation, fusion_name="corr")

    def framewise(self, video: Tensor, len_x: Tensor) -> Tensor:
        """(B, C, T) frame features of every frame, padding included (as the original)."""
        return self.conv2d(video)[0]
