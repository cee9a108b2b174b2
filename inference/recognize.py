"""One video through the model: the feeder's transform and padding, CTC decoding, aligned spans,
and the JSON result that test_one_video.py --json prints and app.py serves."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from inference.align import Recognition, align_sentence, steps_to_frames
from inference.loaded_model import LoadedModel
from inference.video import VideoClip
from utils.errors import UserError


class ClipTooShortError(UserError):
    """The video has fewer frames than the model's temporal stack runs on."""


@dataclass
class PreparedInput:
    """A padded one-video batch and where the real frames sit inside it."""

    video: Tensor  # (1, T_padded, 3, H, W) in [-1, 1]
    length: Tensor  # (1,) padded length, as the feeder's collate gives it
    num_frames: int  # T: real frames
    left_pad: int  # frames copied in front of the first one
    stride: int  # input frames per output step


def prepare_input(frames: np.ndarray, kernel_sizes: Sequence[str], input_size: int = 224,
                  image_scale: float = 1.0) -> PreparedInput:
    """The feeder's test transform and collate padding applied to (T, H, W, 3) RGB uint8 frames."""
    from dataset.collate import pad_collate, temporal_padding
    from dataset.transforms import build_transform

    transform = build_transform(train=False, crop_size=input_size, image_scale=image_scale)
    video = transform(frames)
    num_frames = int(video.shape[0])
    padded, length, *_ = pad_collate([(video, torch.zeros(0, dtype=torch.long), {})], kernel_sizes)
    left_pad, stride = temporal_padding(kernel_sizes)
    return PreparedInput(video=padded, length=length, num_frames=num_frames, left_pad=left_pad,
                         stride=stride)


def describe(rec: Recognition, prepared: PreparedInput, source_indices: Sequence[int]) -> list[dict]:
    """Per gloss: class index, output steps, input frames, source-video frames and a score.

    score is the mean probability of the gloss over its aligned steps; log_prob their sum.
    """
    out = []
    for position, (gloss, index, (first, last)) in enumerate(
            zip(rec.glosses, rec.class_indices, rec.step_spans)):
        f0, f1 = steps_to_frames(first, last, prepared.stride, prepared.num_frames)
        step_lp = rec.log_probs[first:last + 1, index]
        out.append({"gloss": gloss, "position": position, "class_index": index,
                    "steps": [first, last], "frames": [f0, f1],
                    "source_frames": [int(source_indices[f0]), int(source_indices[f1])],
                    "score": round(float(step_lp.exp().mean()), 6),
                    "log_prob": round(float(step_lp.sum()), 6)})
    return out


def clip_log_probs(loaded: LoadedModel, frames: np.ndarray,
                   prepared: PreparedInput | None = None) -> tuple[Tensor, Tensor]:
    """(1, T', C) log-probabilities and (1,) lengths of one video: an exported graph that prepares
    its own input gets the decoded frames, every other runner the prepared input (made here
    unless given)."""
    if getattr(loaded.runner, "takes_frames", False):  # inference.onnx_model.OnnxRunner
        return loaded.runner.run_frames(frames)
    if prepared is None:
        prepared = prepare_input(frames, loaded.kernel_sizes, loaded.input_size, loaded.image_scale)
    return loaded.log_probs(prepared.video, prepared.length)


def decode_sentence(loaded: LoadedModel, log_probs: Tensor) -> list[str]:
    """Glosses of one (T', C) sequence, decoded as `loaded.decode` says."""
    steps = int(log_probs.shape[0])
    return [gloss for gloss, _ in loaded.decoder.decode(log_probs[None], [steps], batch_first=True)[0]]


def check_clip_length(num_frames: int, kernel_sizes: Sequence[str]) -> None:
    """ClipTooShortError unless a clip of `num_frames`, padded as the feeder pads it, runs through
    the temporal stack."""
    from dataset.collate import padded_length, temporal_padding
    from modules.tconv import runs_on

    left_pad, stride = temporal_padding(kernel_sizes)

    def runs(frames: int) -> bool:
        return runs_on(padded_length(frames, left_pad, stride), kernel_sizes)

    if not runs(num_frames):
        needed = next(n for n in range(num_frames + 1, 10_000) if runs(n))
        raise ClipTooShortError(f"the video has {num_frames} frame{'s' * (num_frames != 1)}; this model's "
                                f"temporal stack {list(kernel_sizes)} needs at least {needed}: use a longer video")


def recognise_clip(loaded: LoadedModel, clip: VideoClip) -> tuple[dict, Recognition, PreparedInput]:
    """Glosses of a read video with their spans: (JSON-ready result, alignment, network input)."""
    check_clip_length(len(clip.frames), loaded.kernel_sizes)
    prepared = prepare_input(clip.frames, loaded.kernel_sizes, loaded.input_size, loaded.image_scale)
    log_probs, lengths = clip_log_probs(loaded, clip.frames, prepared)
    steps = int(lengths[0])
    sequence = log_probs[0, :steps]
    glosses = decode_sentence(loaded, sequence)
    rec = align_sentence(sequence, glosses, loaded.gloss_dict)
    result = {
        "video": clip.source, "reader": clip.backend, "total_frames": clip.total_frames,
        "num_frames": prepared.num_frames, "output_steps": steps, "temporal_stride": prepared.stride,
        "decode": {"mode": loaded.decode.mode, "beam_width": loaded.decode.beam_width,
                   "lm_path": loaded.decode.lm_path},
        "sentence": " ".join(glosses), "glosses": describe(rec, prepared, clip.source_indices),
    }
    return result, rec, prepared
