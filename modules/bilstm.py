"""Sequence model (`temporal_model.*` in checkpoints): a 2-layer bidirectional LSTM."""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from utils.errors import ConfigError


class BiLSTMLayer(nn.Module):
    """`forward(feats (T, B, D), lengths (B,)) -> (T, B, hidden_size)`; padding never leaks in."""

    def __init__(self, input_size: int, hidden_size: int = 1024, num_layers: int = 2,
                 dropout: float = 0.3, bidirectional: bool = True) -> None:
        super().__init__()
        directions = 2 if bidirectional else 1
        if hidden_size % directions:
            raise ConfigError(f"model_args.hidden_size: hidden_size must be even for a bidirectional LSTM, "
                              f"got {hidden_size}")
        self.rnn = nn.LSTM(input_size, hidden_size // directions, num_layers=num_layers,
                           dropout=dropout, bidirectional=bidirectional)

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        """Run over packed sequences; frames past each length come back as zeros."""
        packed = pack_padded_sequence(feats, lengths.cpu(), enforce_sorted=False)
        outputs, _ = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, total_length=feats.shape[0])
        return outputs
