"""Pack format choices: JPEG quality against bytes and fidelity, PNG levels, and JPEG decoders.

    .venv/bin/python bench/pack_formats.py [--videos 6] [--repeats 5]

Renders camera-like synthetic PHOENIX frames (210x260, as `--style camera` writes them), resizes
them to 256x256 with Lanczos as the preprocessing does, then prints per frame: bytes and PSNR of
JPEG at several qualities (4:2:0), bytes and encode time of PNG levels, and decode time of the
candidate JPEG decoders on the same bytes (alternating, best of --repeats; PyTurboJPEG is
included when it and its system libturbojpeg are installed). This is the measurement behind the
pack defaults (JPEG q90 through simplejpeg).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import simplejpeg  # noqa: E402

from dataset.registry import dataset_spec  # noqa: E402
from dataset.synthetic import SIZES, plan_videos, render_camera_video  # noqa: E402


def camera_frames(videos: int, size: int) -> list[np.ndarray]:
    """RGB camera-like frames resized to `size` x `size`."""
    width, height = dataset_spec("phoenix2014").raw_frame_size
    frames = []
    for video in plan_videos(dataset_spec("phoenix2014"), "small", 0)[:videos]:
        for bgr in render_camera_video(video, width, height, SIZES["small"].frames_per_gloss):
            resized = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_LANCZOS4)
            frames.append(cv2.cvtColor(resized, cv2.COLOR_BGR2RGB))
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def decoders() -> dict[str, Callable[[bytes], np.ndarray]]:
    """JPEG bytes -> RGB array, for every decoder available here."""
    found = {
        "simplejpeg": lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB"),
        "cv2.imdecode + cvtColor": lambda data: cv2.cvtColor(
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB),
    }
    try:
        from turbojpeg import TJPF_RGB, TurboJPEG

        turbo = TurboJPEG()
        found["PyTurboJPEG"] = lambda data: turbo.decode(data, pixel_format=TJPF_RGB)
    except Exception as error:  # not installed, or no system libturbojpeg for it to load
        print(f"PyTurboJPEG not measured: {type(error).__name__}: {str(error).splitlines()[0]}")
    return found


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    cv2.setNumThreads(0)
    frames = camera_frames(args.videos, args.size)
    raw = args.size * args.size * 3
    print(f"{len(frames)} camera-like frames, {args.size}x{args.size}, raw {raw} bytes each")
    for quality in (75, 85, 90, 95):
        encoded = [simplejpeg.encode_jpeg(f, quality=quality, colorspace="RGB", colorsubsampling="420")
                   for f in frames]
        decoded = [simplejpeg.decode_jpeg(e, colorspace="RGB") for e in encoded]
        mean = np.mean([len(e) for e in encoded])
        error = np.mean([np.abs(d.astype(int) - f).mean() for d, f in zip(decoded, frames)])
        print(f"jpeg q{quality} 4:2:0: {mean:8.0f} bytes ({raw / mean:5.1f}x under raw), "
              f"PSNR {np.mean([psnr(d, f) for d, f in zip(decoded, frames)]):.1f} dB, mean |error| {error:.2f}")
    for level in (1, 3, 6):
        start = time.perf_counter()
        encoded = [cv2.imencode(".png", f, [cv2.IMWRITE_PNG_COMPRESSION, level])[1] for f in frames]
        spent = (time.perf_counter() - start) / len(frames)
        print(f"png level {level}: {np.mean([len(e) for e in encoded]):8.0f} bytes, encode {spent * 1e3:.2f} ms")
    data = [simplejpeg.encode_jpeg(f, quality=90, colorspace="RGB", colorsubsampling="420") for f in frames]
    candidates = decoders()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, decode in candidates.items():  # alternating: noise hits every decoder alike
            start = time.perf_counter()
            for item in data:
                decode(item)
            times[name].append((time.perf_counter() - start) / len(data))
    reference = [candidates["simplejpeg"](d) for d in data]
    base = min(times["cv2.imdecode + cvtColor"])
    for name, decode in candidates.items():
        same = all(np.array_equal(decode(d), r) for d, r in zip(data, reference))
        print(f"decode q90 {name:24}: {min(times[name]) * 1e3:.3f} ms/frame (best of {args.repeats}), "
              f"{base / min(times[name]):.2f}x cv2, same pixels as simplejpeg: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
