"""Video augmentation on uint8 frames: plan the random choices first, then apply them.

Planning (which frames, which crop window, flip or not) is separate from applying so that the
packed fast path can read only the chosen frames and the crop window straight from a memory map,
and yield exactly the tensors of the per-frame path for the same torch random state. All
randomness comes from torch's global generator, which DataLoader seeds per worker.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class TemporalRescale:
    """Resample a clip to a random length in [1-scaling, 1+scaling] x its length (as the original).

    The new length is clamped to [min_len, ceil(max_len / frame_interval)] and rounded up to a
    multiple of 4; frames are drawn without replacement when shrinking, with replacement when growing.
    """

    scaling: float
    min_len: int
    max_len: int
    frame_interval: int

    def new_length(self, num_frames: int) -> int:
        """Random target length for a clip of `num_frames`."""
        low, high = 1.0 - self.scaling, 1.0 + self.scaling
        new_len = int(num_frames * (low + (high - low) * float(torch.rand(1))))
        new_len = max(self.min_len, min(new_len, math.ceil(self.max_len / self.frame_interval)))
        if (new_len - 4) % 4 != 0:
            new_len += 4 - (new_len - 4) % 4
        return new_len

    def sample(self, num_frames: int) -> np.ndarray:
        """Sorted frame indices (into a clip of `num_frames`) of the rescaled clip."""
        new_len = self.new_length(num_frames)
        if new_len <= num_frames:
            index = torch.randperm(num_frames)[:new_len]
        else:
            index = torch.randint(0, num_frames, (new_len,))
        return np.sort(index.numpy())


@dataclass(frozen=True)
class SpatialParams:
    """Where to crop (top, left, height, width), zero padding needed first (top, bottom, left, right), flip."""

    top: int
    left: int
    height: int
    width: int
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    flip: bool = False


def random_crop_params(height: int, width: int, size: int) -> SpatialParams:
    """Random `size` x `size` window; frames smaller than the window are zero padded (as the original)."""
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    top = int(torch.randint(0, height - size + 1, (1,))) if pad_h == 0 else 0
    left = int(torch.randint(0, width - size + 1, (1,))) if pad_w == 0 else 0
    pad = (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
    return SpatialParams(top, left, size, size, pad)


def center_crop_params(height: int, width: int, size: int) -> SpatialParams:
    """Central window of at most `size` x `size` (no padding, as the original CenterCrop)."""
    new_h, new_w = min(size, height), min(size, width)
    return SpatialParams(int(round((height - new_h) / 2.0)), int(round((width - new_w) / 2.0)), new_h, new_w)


def crop_window(frames: np.ndarray, params: SpatialParams) -> np.ndarray:
    """The crop window of (T, H, W, C) frames: a view (no copy) unless zero padding is needed."""
    if any(params.pad):
        top, bottom, left, right = params.pad
        frames = np.pad(frames, ((0, 0), (top, bottom), (left, right), (0, 0)))
    return frames[:, params.top:params.top + params.height, params.left:params.left + params.width]


def flip_width(frames: np.ndarray) -> np.ndarray:
    """Mirror (T, H, W, C) uint8 frames left-right.

    cv2.flip per frame: numpy copies of a reversed 3-byte-pixel axis run element by element,
    which made flipping the most expensive step of the fast path.
    """
    out = np.empty_like(frames)
    for src, dst in zip(frames, out):
        cv2.flip(src, 1, dst=dst)
    return out


def gather_clip(frames: np.ndarray, index: np.ndarray, params: SpatialParams) -> np.ndarray:
    """Frames `index` of the crop window, flipped if planned: one copy of only the pixels kept."""
    clip = crop_window(frames, params)[index]
    return flip_width(clip) if params.flip else clip


def scaled_size(height: int, width: int, image_scale: float) -> tuple[int, int]:
    """(width, height) after rescaling by a factor in (0, 1], or an absolute square size when > 1."""
    if 0 < image_scale <= 1:
        return int(width * image_scale), int(height * image_scale)
    return int(image_scale), int(image_scale)


def rescale_frames(frames: np.ndarray, image_scale: float) -> np.ndarray:
    """Resize frames by a factor in (0, 1], or to an absolute square size when > 1 (original semantics)."""
    if image_scale == 1.0:
        return frames
    size = scaled_size(*frames.shape[1:3], image_scale)
    return np.stack([cv2.resize(np.ascontiguousarray(f), size, interpolation=cv2.INTER_CUBIC) for f in frames])


def to_uint8_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, C) uint8 array -> (T, C, H, W) uint8 tensor (one contiguous copy)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)


def normalise(video: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to float in [-1, 1] as the original (x / 127.5 - 1), on the tensor's device.

    In place on one float copy that keeps the input's strides: for the (T, C, H, W) view of
    channels-last frames this is about 3x faster than converting to a contiguous layout first.
    """
    out = video.float()
    return out.div_(127.5).sub_(1.0)


def model_input(video: torch.Tensor) -> torch.Tensor:
    """A collated batch as the model takes it: uint8 frames normalised (after the device transfer), else as is.

    Feeders hand out uint8 so that workers skip the float conversion and a batch crosses to the
    GPU at a quarter of the bytes; the values equal normalising before collation exactly, since
    padding only copies frames.
    """
    return normalise(video) if video.dtype == torch.uint8 else video


@dataclass(frozen=True)
class VideoTransform:
    """Training (random crop, flip, temporal rescale) or test (center crop) transform of uint8 clips."""

    train: bool
    crop_size: int
    image_scale: float
    flip_prob: float
    temporal: TemporalRescale | None

    def sample_frames(self, num_frames: int) -> np.ndarray:
        """Indices of the frames the output is made of (identity at test time)."""
        if num_frames <= 0:
            raise ValueError("cannot transform a clip with no frames")
        if self.train and self.temporal is not None:
            return self.temporal.sample(num_frames)
        return np.arange(num_frames)

    def sample_spatial(self, height: int, width: int) -> SpatialParams:
        """Crop window and flip decision for frames of `height` x `width`."""
        if not self.train:
            return center_crop_params(height, width, self.crop_size)
        params = random_crop_params(height, width, self.crop_size)
        flip = bool(float(torch.rand(1)) < self.flip_prob)
        return SpatialParams(params.top, params.left, params.height, params.width, params.pad, flip)

    def finish(self, clip: np.ndarray) -> torch.Tensor:
        """Rescale gathered (T, h, w, 3) uint8 frames into a (T, 3, h', w') uint8 tensor."""
        return to_uint8_tensor(rescale_frames(clip, self.image_scale))

    def apply(self, frames: np.ndarray, index: np.ndarray, params: SpatialParams) -> torch.Tensor:
        """Frames `index` of (T, H, W, 3) uint8 `frames`, cropped/flipped/rescaled, as (T', 3, h, w) uint8."""
        return self.finish(gather_clip(frames, index, params))

    def uint8(self, frames: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """Transform a whole in-memory RGB clip: (T, H, W, 3) uint8 -> (T', 3, h, w) uint8 (what feeders yield)."""
        frames = np.asarray(frames) if not isinstance(frames, np.ndarray) else frames
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected (T, H, W, 3) uint8 RGB frames, got {frames.dtype} {frames.shape}")
        index = self.sample_frames(len(frames))
        params = self.sample_spatial(*frames.shape[1:3])
        return self.apply(frames, index, params)

    def __call__(self, frames: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """Transform a whole in-memory RGB clip: (T, H, W, 3) uint8 -> (T', 3, h, w) float in [-1, 1]."""
        return normalise(self.uint8(frames))


@dataclass(frozen=True)
class Augmentation:
    """How training clips are augmented (feeder_args keys of the same names; config/baseline.yaml)."""

    flip_prob: float          # horizontal flip probability
    temporal_scaling: float   # clip length drawn in [1-s, 1+s] x its length
    temporal_min_len: int     # the resampled length's bounds (frames)
    temporal_max_len: int


def build_transform(train: bool, crop_size: int, image_scale: float,
                    augmentation: Augmentation | None = None, frame_interval: int = 1) -> VideoTransform:
    """The feeder's transform: train = random crop + flip + temporal rescale (`augmentation`);
    test = center crop."""
    if not train:
        return VideoTransform(False, crop_size, image_scale, 0.0, None)
    if augmentation is None:
        raise ValueError("a training transform needs its augmentation")
    temporal = TemporalRescale(augmentation.temporal_scaling, augmentation.temporal_min_len,
                               augmentation.temporal_max_len, frame_interval)
    return VideoTransform(True, crop_size, image_scale, augmentation.flip_prob, temporal)
