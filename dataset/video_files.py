"""Sign videos as files: which files are videos or frames, and decoding a whole video with PyAV
(display rotation applied, optionally resampled to a fixed frame rate), shared by the table
dataset's preprocessing and the one-video tools."""
from __future__ import annotations

import argparse
import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from dataset.images import read_rgb
from dataset.layout import parse_resolution
from utils.config import default_config
from utils.errors import BadFileError, UserError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# (width, height) preprocess/ resizes to by default: the config's feeder_args.frames_res
PREPROCESS_SIZE = parse_resolution(default_config()["feeder_args"]["frames_res"])
# Containers FFmpeg opens for a single still image: a picture renamed to .mp4 is not a video.
IMAGE_CONTAINERS = ("image2", "image2pipe")
TRUNCATION_TOLERANCE = 0.02  # decoded frames may fall this share (plus one frame) short of the header's


class VideoReadError(UserError):
    """A video file or frame folder exists but cannot be turned into frames."""


def frame_rate_arg(value: str) -> float:
    """argparse type of --fps (decode_video's resampling rate): frames a second, 0 to 1000."""
    try:
        fps = float(value)
    except ValueError:
        fps = 0.0
    if not 0 < fps <= 1000:
        raise argparse.ArgumentTypeError(f"expected a frame rate in frames a second, e.g. 25, got {value!r}")
    return fps


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value, so frame10 follows frame9."""
    parts = re.split(r"(\d+)", name)
    key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p != "")
    return key + ((2, 0, name),)  # exact name last: a deterministic tie-break (frame01 vs frame1)


def resize_frame(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize an RGB frame to `size` (width, height) the way preprocessing does (Lanczos)."""
    if size is None or (frame.shape[1], frame.shape[0]) == tuple(size):
        return np.ascontiguousarray(frame)
    return cv2.resize(frame, tuple(size), interpolation=cv2.INTER_LANCZOS4)


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder in natural order; error when there are none."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise VideoReadError(
            f"frame folder {folder} contains no images (looked for {', '.join(IMAGE_EXTENSIONS)}); "
            f"pass a folder of extracted frames or a video file ({', '.join(VIDEO_EXTENSIONS)})")
    return sorted(files, key=lambda p: natural_key(p.name))


def read_image_rgb(path: Path) -> np.ndarray:
    """Read one image of a frame folder as RGB uint8, with an error naming the file and the fix."""
    try:
        return read_rgb(path)
    except BadFileError:
        raise VideoReadError(f"cannot decode image {path}; remove it from the frame folder or "
                             f"re-save it as PNG/JPEG") from None


def upright_rgb(frame) -> np.ndarray:
    """A decoded PyAV frame as (H, W, 3) RGB uint8, turned as its display matrix says (phones record
    portrait video as landscape frames plus a rotation)."""
    image = frame.to_ndarray(format="rgb24")
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4  # counter-clockwise quarter turns
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


@dataclass
class DecodedVideo:
    """What decoding a whole video found: its source frame rate and frame count (filled as it runs)."""

    fps: float | None = None  # the stream's average frame rate; None when the container has none
    decoded: int = 0  # frames decoded from the file (before resampling)


def _expected_frames(container, stream) -> int:
    """Frames the header promises (the stream's count, else duration x rate); 0 when unknown."""
    if stream.frames:
        return int(stream.frames)
    if container.duration and stream.average_rate:
        return int(container.duration / 1_000_000 * float(stream.average_rate))
    return 0


def decode_video(path: str | os.PathLike, fps: float | None = None, found: DecodedVideo | None = None,
                 ) -> Iterator[np.ndarray]:
    """Every frame of a video file as upright RGB uint8, in order; with `fps`, resampled to that rate
    (frames repeated or dropped by their timestamps, so variable frame rates come out even).

    Raises VideoReadError (the reason only: callers add the file and row) for a file that is not a
    video, has no video stream or frames, does not decode, or stops short of its header's length.
    `found` receives the source frame rate and the decoded count.
    """
    import av

    found = found if found is not None else DecodedVideo()
    try:
        container = av.open(os.fspath(path))
    except (av.FFmpegError, OSError, ValueError, IndexError) as error:
        raise VideoReadError(f"not a readable video ({_reason(error)})") from None
    with container:
        if container.format.name in IMAGE_CONTAINERS or container.format.name.endswith("_pipe"):
            raise VideoReadError(f"an image ({container.format.name}), not a video")
        if not container.streams.video:
            raise VideoReadError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        found.fps = float(stream.average_rate) if stream.average_rate else None
        expected = _expected_frames(container, stream)
        pending: tuple[np.ndarray, float] | None = None
        times_start: float | None = None
        try:
            for frame in container.decode(stream):
                found.decoded += 1
                image = upright_rgb(frame)
                if fps is None:
                    yield image
                    continue
                time = float(frame.time) if frame.time is not None else (found.decoded - 1) / (found.fps or fps)
                times_start = time if times_start is None else times_start
                if pending is not None:
                    yield from _repeat(pending[0], pending[1], time - times_start, fps)
                pending = (image, time - times_start)
        except (av.FFmpegError, OSError, ValueError) as error:
            raise VideoReadError(f"damaged after {found.decoded} frames ({_reason(error)})") from None
        if pending is not None:
            step = 1 / found.fps if found.fps else 1 / fps
            yield from _repeat(pending[0], pending[1], pending[1] + step, fps)
    if found.decoded == 0:
        raise VideoReadError("no video frames")
    if expected and found.decoded < expected * (1 - TRUNCATION_TOLERANCE) - 1:
        raise VideoReadError(f"truncated: {found.decoded} frames decoded, its header says {expected}")


def _repeat(image: np.ndarray, start: float, stop: float, fps: float) -> list[np.ndarray]:
    """`image` once for every constant-`fps` sample time in [start, stop)."""
    return [image] * max(math.ceil(stop * fps - 1e-6) - math.ceil(start * fps - 1e-6), 0)


def _reason(error: BaseException) -> str:
    """A decoder error's message without the errno and file name PyAV puts around it."""
    text = getattr(error, "strerror", None) or str(error)
    return text.strip() or type(error).__name__


# Encoders the synthetic videos and the tests use: name -> (PyAV codec, file suffix, pixel format, options).
CODECS = {
    "h264-lossless": ("libx264rgb", ".mp4", "rgb24", {"qp": "0", "preset": "ultrafast"}),
    "h264": ("libx264", ".mp4", "yuv420p", {"crf": "18", "preset": "ultrafast"}),
    "mpeg4": ("mpeg4", ".mp4", "yuv420p", {"qscale": "3"}),
    "mjpeg": ("mjpeg", ".avi", "yuvj420p", {"qscale": "3"}),
    "vp9": ("libvpx-vp9", ".webm", "yuv420p", {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0"}),
}


def available_codecs() -> list[str]:
    """The CODECS this PyAV build can encode (its wheel may lack an encoder, e.g. VP9)."""
    import av

    names = []
    for name, (codec, *_rest) in CODECS.items():
        try:
            av.codec.Codec(codec, "w")
        except (av.FFmpegError, ValueError):
            continue
        names.append(name)
    return names


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray] | np.ndarray, fps: float = 25,
                lossless: bool = True, codec: str | None = None, rotation: int = 0,
                times: Sequence[float] | None = None) -> None:
    """Write RGB uint8 frames as a video with PyAV: lossless H.264 RGB by default (tests, demos), or
    one of CODECS; `rotation` stores a display rotation (degrees counter-clockwise, as phones do),
    `times` gives each frame's timestamp in seconds (a variable frame rate)."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    name = codec or ("h264-lossless" if lossless else "h264")
    encoder, _suffix, pix_fmt, options = CODECS[name]
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream(encoder, rate=rate, options=dict(options))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        if times is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for number, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[number] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
