"""Batch collation: pad videos so the temporal convolution stack sees whole windows at both ends."""
from __future__ import annotations

from typing import Any, Sequence

import torch


def temporal_padding(kernel_sizes: Sequence[str]) -> tuple[int, int]:
    """(left_pad, total_stride) of a temporal stack like ['K5', 'P2', 'K5', 'P2'].

    'K<k>' is an unpadded conv of width k, 'P<s>' a pooling of stride s. left_pad frames lost to
    the convolutions are re-added by repeating the first frame, as the original feeder did.
    """
    left_pad, last_stride, total_stride = 0, 1, 1
    for layer in kernel_sizes:
        kind, value = layer[0], int(layer[1:])
        if kind == "K":
            left_pad = left_pad * last_stride + (value - 1) // 2
        elif kind == "P":
            last_stride = value
            total_stride *= value
        else:
            raise ValueError(f"bad temporal layer {layer!r} in {list(kernel_sizes)}; expected 'K<int>' or 'P<int>'")
    return left_pad, total_stride


def padded_length(num_frames, left_pad: int, stride: int):
    """Frames of a clip after padding: ceil(T / stride) * stride + 2 * left_pad (an int, or a
    tensor, so that the exported graph pads with this same formula)."""
    return num_frames + (-num_frames) % stride + 2 * left_pad


def padding_index(num_frames, total, left_pad: int) -> torch.Tensor:
    """Source frame of each of `total` padded frames: `left_pad` copies of the first frame, the
    clip, then copies of the last frame (ints or traced tensors)."""
    return (torch.arange(total) - left_pad).clamp(min=0).minimum(torch.as_tensor(num_frames) - 1)


def _labels(labels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated labels and their lengths."""
    lengths = torch.tensor([len(lab) for lab in labels], dtype=torch.long)
    flat = torch.cat([torch.as_tensor(lab, dtype=torch.long).reshape(-1) for lab in labels]) if labels else \
        torch.zeros(0, dtype=torch.long)
    return flat, lengths


def pad_collate(batch: Sequence[tuple[torch.Tensor, Any, Any]], kernel_sizes: Sequence[str],
                pad_to_multiple: int = 1) -> tuple:
    """Sort by length (longest first) and pad; returns (video, video_length, labels, label_length, info).

    Video items (T, C, H, W), uint8 or float (padding only copies frames): each gets `left_pad`
    copies of its first frame and copies of its last frame up to the batch length, a multiple of
    the total stride plus 2 * left_pad; video_length is ceil(T / stride) * stride + 2 * left_pad
    (the original's lengths). Feature items (T, D): padded with the last frame and returned as
    (B, D, T) with the true lengths.
    `pad_to_multiple` > 1 pads the batch's time length further, with last frames, up to a multiple
    of it (length buckets: a compiled model sees a few lengths); the lengths stay as above.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    batch = sorted(batch, key=lambda item: len(item[0]), reverse=True)
    videos, labels, info = zip(*batch)
    labels = [torch.as_tensor(lab, dtype=torch.long) for lab in labels]
    max_len = len(videos[0])
    if videos[0].dim() > 3:
        left_pad, stride = temporal_padding(kernel_sizes)
        video_length = torch.tensor([padded_length(len(v), left_pad, stride) for v in videos], dtype=torch.long)
        total = _round_up(padded_length(max_len, left_pad, stride), pad_to_multiple)
        padded = torch.stack([  # padding_index's frames; cat keeps the layout contiguous
            torch.cat((v[:1].expand(left_pad, -1, -1, -1), v, v[-1:].expand(total - len(v) - left_pad, -1, -1, -1)))
            for v in videos
        ])
    else:
        video_length = torch.tensor([len(v) for v in videos], dtype=torch.long)
        total = _round_up(max_len, pad_to_multiple)
        padded = torch.stack([torch.cat((v, v[-1:].expand(total - len(v), -1))) for v in videos])
        padded = padded.permute(0, 2, 1)
    flat, label_length = _labels(labels)
    return padded, video_length, flat, label_length, list(info)


def _round_up(length: int, multiple: int) -> int:
    """`length` rounded up to a multiple of `multiple` (>= 1)."""
    if multiple < 1:
        raise ValueError(f"pad_to_multiple must be >= 1, got {multiple}")
    return -(-length // multiple) * multiple


def padding_counts(video: torch.Tensor, video_length: torch.Tensor) -> tuple[int, int]:
    """(padded frames, frames) of a collated batch: frames past each video's length are padding.

    Video batches are (B, T, C, H, W), feature batches (B, D, T).
    """
    frames = int(video.shape[0]) * int(video.shape[-1] if video.dim() == 3 else video.shape[1])
    return frames - int(video_length.sum()), frames
