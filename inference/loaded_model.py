"""The loaded model the inference tools run: a network (PyTorch or ONNX) with its vocabulary and the
input settings it was trained with. Built by inference.loading (checkpoints) and
inference.onnx_model (exported graphs)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from decoding.config import DecodeConfig
from decoding.decoder import Decoder, read_lm


@dataclass
class LoadedModel:
    """A ready-to-run model with its vocabulary and the input settings it was trained with.

    `model` is the eval-mode nn.Module (None for an ONNX file); `runner` maps (video, lengths) to
    CTC log-probabilities and lengths: inference.network.CTCLogProbs, or an onnxruntime session.
    """

    model: nn.Module | None
    runner: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
    gloss_dict: dict
    num_classes: int
    kernel_sizes: list[str]
    input_size: int = 224
    image_scale: float = 1.0
    frame_size: tuple[int, int] = (256, 256)  # (width, height) the training frames were resized to
    decode: DecodeConfig = field(default_factory=DecodeConfig.recipe)  # how its outputs are decoded
    source: dict = field(default_factory=dict)  # where architecture / vocabulary came from
    device: torch.device = torch.device("cpu")

    def log_probs(self, video: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T', C) CTC log-probabilities and (B,) output lengths, on the CPU."""
        with torch.inference_mode():
            log_probs, out_lengths = self.runner(video.to(self.device), lengths.to(self.device))
        return log_probs.float().cpu(), out_lengths.cpu()

    @cached_property
    def decoder(self) -> Decoder:
        """The decoder of `decode` (built, and its LM read, on first use)."""
        return Decoder(self.decode, self.gloss_dict, read_lm(self.decode), num_classes=self.num_classes)


def vocab_name(path: str | os.PathLike) -> str:
    """File name of the vocabulary beside an exported graph."""
    return Path(path).with_suffix(".vocab.json").name
