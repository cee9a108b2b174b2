"""Read one sign video (a video file or a folder of frame images) as RGB uint8 frames.

Frames are sampled uniformly down to at most ``max_frames`` and resized to the resolution the
dataset preprocessing writes (256x256, Lanczos), so a phone video reaches the network exactly
like a preprocessed dataset sample does.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from dataset.video_files import (IMAGE_EXTENSIONS, PREPROCESS_SIZE, VIDEO_EXTENSIONS, VideoReadError,  # noqa: F401
                                 decode_video, list_frame_files, natural_key, read_image_rgb, resize_frame, upright_rgb,
                                 write_video)
from utils.errors import MissingFileError, run_cli
from utils.outputs import check_output_file

BACKENDS = ("auto", "pyav", "opencv")


@dataclass(frozen=True)
class VideoClip:
    """Frames of one video plus where they came from."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    source_indices: tuple[int, ...]  # index of each kept frame in the video (resampled to --fps) / folder
    total_frames: int  # frames in the video (resampled to --fps) / folder before sampling
    source: str  # the path read
    backend: str  # 'pyav', 'opencv' or 'images'


def uniform_indices(total: int, max_frames: int) -> list[int]:
    """Indices of at most `max_frames` frames spread evenly over `total` (all when it fits)."""
    if total <= 0:
        return []
    if max_frames <= 0:
        raise ValueError(f"max_frames must be positive, got {max_frames}")
    if total <= max_frames:
        return list(range(total))
    # Same rule as the original test_one_video: linspace over [0, total-1], truncated to int.
    return np.linspace(0, total - 1, max_frames).astype(np.int64).tolist()


def read_frame_folder(folder: str | os.PathLike, max_frames: int,
                      size: tuple[int, int] | None = PREPROCESS_SIZE) -> VideoClip:
    """Read a folder of frame images (naturally sorted), sampled uniformly to `max_frames`."""
    files = list_frame_files(folder)
    keep = uniform_indices(len(files), max_frames)
    frames = [resize_frame(read_image_rgb(files[i]), size) for i in keep]
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VideoReadError(f"frames in {folder} have different sizes {sorted(shapes)}; "
                             f"all frames of one video must share one size (or pass a resize size)")
    return VideoClip(np.stack(frames), tuple(keep), len(files), str(folder), "images")


def _count_packets_pyav(path: Path) -> int:
    """Number of video packets: one per frame for the codecs phones and ffmpeg write."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _decode_selected_pyav(path: Path, keep: set[int], size: tuple[int, int] | None
                          ) -> tuple[dict[int, np.ndarray], int]:
    """Decode every frame, converting only the kept ones; returns (kept frames, decoded count)."""
    import av

    kept: dict[int, np.ndarray] = {}
    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if count in keep:
                kept[count] = resize_frame(upright_rgb(frame), size)
            count += 1
    return kept, count


def _count_frames_opencv(path: Path) -> int:
    """Frame count by grabbing every frame (CAP_PROP_FRAME_COUNT is only an estimate)."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoReadError(f"OpenCV cannot open {path}")
        count = 0
        while capture.grab():
            count += 1
        return count
    finally:
        capture.release()


def _decode_selected_opencv(path: Path, keep: set[int], size: tuple[int, int] | None
                            ) -> tuple[dict[int, np.ndarray], int]:
    """Grab every frame, retrieving (decoding to BGR) only the kept ones."""
    capture = cv2.VideoCapture(str(path))
    kept: dict[int, np.ndarray] = {}
    count = 0
    try:
        if not capture.isOpened():
            raise VideoReadError(f"OpenCV cannot open {path}")
        while capture.grab():
            if count in keep:
                ok, bgr = capture.retrieve()
                if not ok or bgr is None:
                    raise VideoReadError(f"OpenCV cannot decode frame {count} of {path}")
                kept[count] = resize_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)
            count += 1
    finally:
        capture.release()
    return kept, count


def _read_with(path: Path, max_frames: int, size: tuple[int, int] | None,
               count_fn: Callable[[Path], int],
               decode_fn: Callable[[Path, set, tuple | None], tuple[dict, int]]
               ) -> tuple[np.ndarray, list[int], int]:
    """Count, pick uniform indices, decode them; redo once if the count was off."""
    total = count_fn(path)
    for _ in range(2):
        keep = uniform_indices(total, max_frames)
        kept, decoded = decode_fn(path, set(keep), size)
        if decoded == total:
            break
        total = decoded  # container metadata lied (damaged tail, odd codec): sample the real count
    if total == 0 or len(kept) != len(keep):
        raise VideoReadError(f"{path} has no decodable video frames")
    return np.stack([kept[i] for i in keep]), keep, total


def read_video_file(path: str | os.PathLike, max_frames: int,
                    size: tuple[int, int] | None = PREPROCESS_SIZE, backend: str = "auto") -> VideoClip:
    """Decode a video file with PyAV (or OpenCV when PyAV fails), sampled to `max_frames`."""
    path = Path(path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; use one of {BACKENDS}")
    readers = {"pyav": (_count_packets_pyav, _decode_selected_pyav),
               "opencv": (_count_frames_opencv, _decode_selected_opencv)}
    order = ["pyav", "opencv"] if backend == "auto" else [backend]
    errors = []
    for name in order:
        count_fn, decode_fn = readers[name]
        try:
            frames, keep, total = _read_with(path, max_frames, size, count_fn, decode_fn)
        except Exception as exc:  # PyAV and OpenCV raise many unrelated types for bad files
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        return VideoClip(frames, tuple(keep), total, str(path), name)
    raise VideoReadError(
        f"cannot decode video {path} ({'; '.join(errors)}). The file is damaged or uses a codec "
        f"this build cannot read; re-encode it, e.g. `ffmpeg -i {path.name} -c:v libx264 out.mp4`, "
        f"or pass a folder of extracted frames")


def read_video_at_fps(path: str | os.PathLike, max_frames: int, fps: float,
                      size: tuple[int, int] | None = PREPROCESS_SIZE) -> VideoClip:
    """A video file resampled to `fps` by its timestamps (as `python -m preprocess --fps` packs a
    table's videos), upright, then sampled uniformly to `max_frames`; PyAV only."""
    path = Path(path)
    try:
        frames = [resize_frame(image, size) for image in decode_video(path, fps)]
    except VideoReadError as error:
        raise VideoReadError(f"cannot decode video {path}: {error}") from None
    keep = uniform_indices(len(frames), max_frames)
    return VideoClip(np.stack([frames[i] for i in keep]), tuple(keep), len(frames), str(path), "pyav")


def count_video_frames(path: str | os.PathLike) -> int:
    """Frames of a video file without decoding them (PyAV packets, else OpenCV); 0 if unreadable."""
    for count in (_count_packets_pyav, _count_frames_opencv):
        try:
            return count(Path(path))
        except Exception:  # PyAV and OpenCV raise many unrelated types for bad files
            continue
    return 0


def video_frame_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) a video file's header states, without decoding a frame; (0, 0) if unknown."""
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()


def load_frames(path: str | os.PathLike, max_frames: int = 360,
                size: tuple[int, int] | None = PREPROCESS_SIZE, backend: str = "auto",
                fps: float | None = None) -> VideoClip:
    """Read a video file or a frame folder as at most `max_frames` RGB frames of `size`; a video
    file resampled to `fps` first when given (its own frames otherwise)."""
    path = check_source(path)
    check_fps_source(path, fps)
    if path.is_dir():
        return read_frame_folder(path, max_frames, size)
    if fps is not None:
        return read_video_at_fps(path, max_frames, fps, size)
    return read_video_file(path, max_frames, size, backend)


def check_fps_source(path: Path, fps: float | None) -> None:
    """--fps resamples by timestamps: refuse it for a frame folder, which has none."""
    if fps is not None and path.is_dir():
        raise VideoReadError(f"--fps {fps:g} resamples a video file by its timestamps, and {path} is a "
                             f"folder of frames (no timestamps): drop --fps, or pass the video file")


def find_videos(root: str | os.PathLike) -> list[Path]:
    """Videos under `root` (any depth): folders that directly hold frame images and video files,
    sorted (a dataset split: features/fullFrame-256x256px/train)."""
    files = [p for p in Path(root).rglob("*") if p.is_file()]
    folders = {p.parent for p in files if p.suffix.lower() in IMAGE_EXTENSIONS}
    return sorted(folders | {p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS})


def check_source(path: str | os.PathLike) -> Path:
    """Fail fast (before loading a model) on a missing path or an unsupported file type."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"video not found: {path} (pass a video file "
                               f"{'/'.join(VIDEO_EXTENSIONS)} or a folder of frame images)")
    if path.is_dir():
        list_frame_files(path)
    elif path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise VideoReadError(f"unsupported video file type {path.suffix!r} for {path}; "
                             f"supported: {', '.join(VIDEO_EXTENSIONS)} or a folder of frame images")
    return path


# What every current browser plays in a <video> element: these codecs in an .mp4 or .webm file,
# and H.264 only in 4:2:0 (Chromium refuses High 4:4:4, e.g. lossless RGB H.264).
BROWSER_CODECS = ("h264", "vp8", "vp9", "av1")
BROWSER_CONTAINERS = (".mp4", ".webm")
BROWSER_PIXEL_FORMATS = ("yuv420p", "yuvj420p")


def browser_playable(path: str | os.PathLike) -> bool:
    """Whether a browser plays the video file as it is (container, codec and pixel format)."""
    if Path(path).suffix.lower() not in BROWSER_CONTAINERS:
        return False
    import av

    try:
        with av.open(str(path)) as container:
            codec = container.streams.video[0].codec_context
            return codec.name in BROWSER_CODECS and (codec.name != "h264" or codec.pix_fmt in
                                                     BROWSER_PIXEL_FORMATS)
    except Exception:  # PyAV raises many unrelated types for files it cannot open
        return False


def transcode_for_browser(source: str | os.PathLike, out: str | os.PathLike, max_width: int = 640) -> Path:
    """Re-encode a video file as H.264 4:2:0 .mp4 at most `max_width` wide (a preview every browser
    plays), frame by frame: a long upload is never held in memory."""
    import av

    out = Path(out)
    with av.open(str(source)) as src, av.open(str(out), mode="w", options={"movflags": "faststart"}) as dst:
        video = src.streams.video[0]
        scale = min(1.0, max_width / video.codec_context.width)
        width = max(2, int(video.codec_context.width * scale) // 2 * 2)  # 4:2:0 needs even sizes
        height = max(2, int(video.codec_context.height * scale) // 2 * 2)
        rate = Fraction(video.average_rate or 25)
        stream = dst.add_stream("libx264", rate=rate, options={"crf": "23", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, frame in enumerate(src.decode(video)):
            image = frame.reformat(width=width, height=height, format="yuv420p")
            image.pts, image.time_base = index, 1 / rate  # one frame per tick at the source's rate
            for packet in stream.encode(image):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    return out


def encode_frame_folder(folder: str | os.PathLike, out: str | os.PathLike, fps: int = 25) -> int:
    """Encode a folder of frame images as an H.264 video (yuv420p: every player and browser reads
    it); returns the frame count. An odd width or height loses its last pixel (yuv420p needs even)."""
    frames = read_frame_folder(folder, max_frames=sys.maxsize, size=None).frames
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    write_video(out, frames, fps=fps, lossless=False)
    return len(frames)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m inference.video FRAMES OUT.mp4`: a frame folder (e.g. a dataset video) as a video file."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("frames", help="folder of frame images (naturally sorted)")
    parser.add_argument("out", help="video file to write (.mp4)")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--force", action="store_true", help="replace an existing OUT file")
    args = parser.parse_args(argv)

    def encode() -> None:
        check_output_file(args.out, {"FRAMES": args.frames}, args.force, option="OUT")
        print(f"{args.out}: {encode_frame_folder(args.frames, args.out, args.fps)} frames at {args.fps} fps")
    return run_cli(encode)


if __name__ == "__main__":
    sys.exit(main())
