"""The recognition network as one deployable function: frames in, CTC log-probabilities out.

`CTCLogProbs` runs the parts of SLRModel that produce the sequence logits (frame backbone,
temporal convolutions, BiLSTM, classifier); the auxiliary branch only feeds training losses.
It is what inference runs in PyTorch and what export.py writes as ONNX, so both paths compute
the same function.
"""
from __future__ import annotations

from torch import Tensor, nn


class CTCLogProbs(nn.Module):
    """`forward(video (B, T, 3, H, W), lengths (B,))` -> log-probs (B, T', C), lengths (B,)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, video: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The sequence branch of SLRModel.forward, log-softmaxed and batch first."""
        framewise, _ = self.model.conv2d(video)
        conv = self.model.conv1d(framewise, lengths)
        out_lengths = conv["feat_len"]
        logits = self.model.classifier(self.model.temporal_model(conv["visual_feat"], out_lengths))
        return logits.float().log_softmax(-1).transpose(0, 1), out_lengths
