"""The recognition network as one deployable function: frames in, CTC log-probabilities out.

`CTCLogProbs` runs the parts of SLRModel that produce the sequence logits (frame backbone,
temporal convolutions, BiLSTM, classifier); the auxiliary branch only feeds training losses.
It is what inference runs in PyTorch and what export.py writes as ONNX, so both paths compute
the same function; `FramesToCTC` adds the input preparation, for a graph that takes decoded frames.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dataset.collate import padded_length, padding_index, temporal_padding
from dataset.transforms import center_crop_params, crop_window, normalise, scaled_size


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


def network_frame_size(frame_size: tuple[int, int], input_size: int,
                       image_scale: float) -> tuple[int, int]:
    """(height, width) of the network's frames: `frame_size` (width, height) after the test
    transform's centre crop and rescale."""
    crop = center_crop_params(frame_size[1], frame_size[0], input_size)
    if image_scale == 1.0:
        return crop.height, crop.width
    width, height = scaled_size(crop.height, crop.width, image_scale)
    return height, width


def bicubic_matrix(size_in: int, size_out: int) -> Tensor:
    """(size_out, size_in) weights of a 1-D bicubic resize (a = -0.75, half-pixel centres, edge
    clamped: cv2.INTER_CUBIC's kernel): torch's own bicubic applied to the unit vectors."""
    unit = torch.eye(size_in).reshape(1, size_in, size_in, 1)  # channel j = unit vector j
    out = F.interpolate(unit, size=(size_out, 1), mode="bicubic", align_corners=False)
    return out[0, :, :, 0].T.contiguous()


class FramesToCTC(nn.Module):
    """`forward(frames (T, H, W, 3) uint8 RGB)` -> log-probs (1, T', C), lengths (1,), greedy ids (1, T').

    One decoded video in, at the frame size the model was trained on: the feeder's test transform
    (centre crop, rescale, x/127.5-1) and the collate's temporal padding run inside the module,
    with the same functions as dataset.transforms and dataset.collate, so that an exported graph
    needs nothing but the frames. The greedy ids are the best path before collapsing repeats.
    """

    def __init__(self, model: nn.Module, kernel_sizes: Sequence[str], frame_size: tuple[int, int],
                 input_size: int = 224, image_scale: float = 1.0) -> None:
        super().__init__()
        self.net = CTCLogProbs(model)
        width, height = frame_size
        self.crop = center_crop_params(height, width, input_size)
        self.resize = image_scale != 1.0
        if self.resize:
            out_h, out_w = network_frame_size(frame_size, input_size, image_scale)
            self.register_buffer("rows", bicubic_matrix(self.crop.height, out_h), persistent=False)
            self.register_buffer("cols", bicubic_matrix(self.crop.width, out_w).T.contiguous(),
                                 persistent=False)
        self.left_pad, self.stride = temporal_padding(kernel_sizes)

    def prepare(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """The network input of (T, H, W, 3) uint8 frames: (1, T_padded, 3, h, w) in [-1, 1] and
        its (1,) length, as inference.recognize.prepare_input makes them."""
        video = crop_window(frames, self.crop).permute(0, 3, 1, 2)
        if self.resize:  # cv2's INTER_CUBIC on uint8, as two matrix products (fast in onnxruntime)
            video = (self.rows @ video.float() @ self.cols).round().clamp(0, 255)
        num_frames = frames.shape[0]
        total = padded_length(num_frames, self.left_pad, self.stride)
        video = normalise(video[padding_index(num_frames, total, self.left_pad)])
        return video[None], torch.as_tensor(total).reshape(1)

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The input preparation, the network and the best path."""
        log_probs, lengths = self.net(*self.prepare(frames))
        return log_probs, lengths, log_probs.argmax(-1)
