"""Gloss classifier (`classifier.weight`, shared with `conv1d.fc.weight` in checkpoints)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NormLinear(nn.Module):
    """x @ W / ||W||_col: a bias-free linear layer whose class vectors are L2-normalised at use."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        # Stored (in, out), the transpose of nn.Linear, as in the published checkpoints.
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.xavier_uniform_(self.weight, gain=nn.init.calculate_gain("relu"))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (..., out_features)."""
        return torch.matmul(x, F.normalize(self.weight, dim=0))


def make_classifier(in_features: int, num_classes: int, weight_norm: bool = True) -> nn.Module:
    """NormLinear (published) or a plain nn.Linear."""
    return NormLinear(in_features, num_classes) if weight_norm else nn.Linear(in_features, num_classes)
