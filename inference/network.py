"""The recognition network as one deployable function: frames in, CTC log-probabilities out.

`CTCLogProbs` runs the parts of SLRModel that produce the sequence logits (frame backbone,
temporal convolutions, BiLSTM, classifier; the auxiliary branch only feeds training losses).
For export, `pack_free=True` swaps the packed BiLSTM (pack_padded_sequence has no ONNX form) for
`PackFreeBiLSTM`, the same computation written with gathers: each sequence is reversed within its
own length for the backward direction, so padding never reaches a valid step, exactly as packing.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from modules.bilstm import BiLSTMLayer


def reverse_within_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each (T, B, D) sequence over its first lengths[b] steps; the padding stays put."""
    steps = torch.arange(x.shape[0], device=x.device)[:, None]  # (T, 1)
    lengths = lengths.to(x.device)[None, :]  # (1, B)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (T, B), its own inverse
    return x.gather(0, index[:, :, None].expand_as(x))


class PackFreeBiLSTM(nn.Module):
    """A BiLSTMLayer's weights run as one-direction LSTMs per layer and direction, no packing."""

    def __init__(self, layer: BiLSTMLayer) -> None:
        super().__init__()
        rnn = layer.rnn
        if not rnn.bidirectional or rnn.batch_first or rnn.proj_size:
            raise ValueError("PackFreeBiLSTM expects a bidirectional, time-major LSTM")
        self.directions = nn.ModuleList()
        for index in range(rnn.num_layers):
            pair = nn.ModuleList()
            for suffix in ("", "_reverse"):
                lstm = nn.LSTM(rnn.input_size if index == 0 else 2 * rnn.hidden_size,
                               rnn.hidden_size, bias=rnn.bias)
                for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if rnn.bias else ()):
                    getattr(lstm, f"{name}_l0").data.copy_(getattr(rnn, f"{name}_l{index}{suffix}"))
                pair.append(lstm)
            self.directions.append(pair)

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        """(T, B, D) -> (T, B, hidden_size); steps past each length are zero, as after unpacking."""
        x = feats
        for forward_lstm, backward_lstm in self.directions:
            ahead, _ = forward_lstm(x)  # padding sits after the valid steps: it cannot leak back
            back, _ = backward_lstm(reverse_within_lengths(x, lengths))
            x = torch.cat([ahead, reverse_within_lengths(back, lengths)], dim=-1)
        valid = torch.arange(x.shape[0], device=x.device)[:, None] < lengths.to(x.device)[None, :]
        return x * valid[:, :, None].to(x.dtype)


class CTCLogProbs(nn.Module):
    """`forward(video (B, T, 3, H, W), lengths (B,))` -> log-probs (B, T', C), lengths (B,)."""

    def __init__(self, model: nn.Module, pack_free: bool = False) -> None:
        super().__init__()
        self.model = model
        self.temporal_model = PackFreeBiLSTM(model.temporal_model) if pack_free else model.temporal_model

    def forward(self, video: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The sequence branch of SLRModel.forward, log-softmaxed and batch first."""
        framewise, _ = self.model.conv2d(video)
        conv = self.model.conv1d(framewise, lengths)
        out_lengths = conv["feat_len"].to(lengths.device)
        logits = self.model.classifier(self.temporal_model(conv["visual_feat"], out_lengths))
        return logits.float().log_softmax(-1).transpose(0, 1), out_lengths
