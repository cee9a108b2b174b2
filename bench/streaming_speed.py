"""Live recognition in real time on this CPU: throughput, real-time factor, gloss latency, memory.

For each model (a checkpoint, and/or a config's architecture with random weights, e.g. the
published ResNet34 at 224 px) and thread count, one long stream made of the split's videos
(resized to the model's frame size) goes through inference.streaming:

- every frame as fast as possible: frames/s, the real-time factor at `--fps` (processing time /
  stream duration; < 1 keeps up), the state the recogniser holds (max) and the process's memory;
- against what one would do instead: offline recognition of the same window (context + look-ahead
  steps) rerun at every output step, ms per frame;
- played at real time (the frames arrive at `--fps`): gloss latency from the arrival of a gloss's
  last frame to its commit, median and 95th percentile, frames dropped;
- played at 2x real time: frames dropped (counted), the longest queue, latency.

    python bench/streaming_speed.py --model_path work_dir/demo/best_model.pt --config config/baseline.yaml \
        --videos demo_data/phoenix2014/features/fullFrame-56x56px/test
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.full_scale import status_kib  # noqa: E402
from bench.onnx_runtime import random_model  # noqa: E402
from inference.live import TimedFrame, play  # noqa: E402
from inference.loading import load_model  # noqa: E402
from inference.onnx_stream import export_stream, load_stream_export  # noqa: E402
from inference.recognize import clip_log_probs  # noqa: E402
from inference.streaming import StreamingRecognizer, StreamSettings  # noqa: E402
from inference.video import find_videos, load_frames, resize_frame  # noqa: E402


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", help="a checkpoint (.pt) of main.py")
    parser.add_argument("--config", help="a config's architecture with random weights")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 112],
                        help="--config: network input sizes (frames resized to size * 8/7, as 224 of 256)")
    parser.add_argument("--videos", required=True, help="split whose videos make the stream")
    parser.add_argument("--seconds", type=float, default=12.0, help="stream length at --fps")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--context", type=int, default=StreamSettings.context)
    parser.add_argument("--lookahead", type=int, default=StreamSettings.lookahead)
    parser.add_argument("--windows", type=int, default=3, help="offline windows timed for the baseline")
    parser.add_argument("--onnx", action="store_true", help="also the pieces exported as ONNX (fp32)")
    return parser.parse_args()


def stream_frames(videos: list[Path], frame_size: tuple[int, int], count: int) -> np.ndarray:
    """`count` frames of the split's videos played one after another, at `frame_size`."""
    frames: list[np.ndarray] = []
    for video in videos:
        frames += [resize_frame(f, frame_size) for f in load_frames(video, 10 ** 6, None).frames]
        if len(frames) >= count:
            break
    return np.stack(frames[:count])


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); nan for none."""
    return float(np.percentile(values, q, method="nearest")) if values else float("nan")


def run(name: str, loaded, frames: np.ndarray, args: argparse.Namespace, threads: int) -> None:
    """The four measurements of one model at one thread count, as one table row each."""
    torch.set_num_threads(threads)
    settings = StreamSettings(args.context, args.lookahead)
    recogniser = StreamingRecognizer(loaded, settings, fps=args.fps)
    recogniser.push(frames[0])  # warm-up (oneDNN primitives)
    recogniser.reset()
    held, start = 0, time.perf_counter()
    for frame in frames:
        recogniser.push(frame)
        held = max(held, recogniser.held_bytes())
    recogniser.flush()
    elapsed = time.perf_counter() - start
    fps = len(frames) / elapsed
    rss, hwm = status_kib(os.getpid(), "VmRSS", "VmHWM")

    naive = "-"
    if loaded.model is not None:  # the same window recognised offline, once per output step
        window = (settings.context + settings.lookahead + 1) * recogniser.stride
        t0 = time.perf_counter()
        for i in range(args.windows):
            clip_log_probs(loaded, frames[i * recogniser.stride:i * recogniser.stride + window])
        naive_ms = (time.perf_counter() - t0) / args.windows / recogniser.stride * 1000
        naive = f"{naive_ms:.1f} ({naive_ms * fps / 1000:.1f}x)"

    timed = [TimedFrame(f, i / args.fps) for i, f in enumerate(frames)]
    real = play(timed, recogniser, speed=1.0)
    double = play(timed, recogniser, speed=2.0)
    lat = {key: [1000 * latency for _, latency in result.glosses] for key, result in
           (("1x", real), ("2x", double))}
    look = recogniser.gloss_lookahead_frames()
    print(f"| {name} | {threads} | {fps:.1f} | {args.fps / fps:.2f} | {1000 / fps:.1f} | {naive} "
          f"| {look} ({1000 * look / args.fps:.0f}) "
          f"| {statistics.median(lat['1x']) if lat['1x'] else float('nan'):.0f} / "
          f"{percentile(lat['1x'], 95):.0f} | {real.dropped} of {real.arrived} "
          f"| {double.dropped} of {double.arrived}, queue <= {double.longest_queue} "
          f"| {percentile(lat['2x'], 50):.0f} / {percentile(lat['2x'], 95):.0f} "
          f"| {held / 2 ** 20:.2f} | {rss / 1024:.0f} ({hwm / 1024:.0f}) |", flush=True)


def main() -> None:
    """Each model and thread count, one row each."""
    args = parse_args()
    if not (args.model_path or args.config):
        sys.exit("error: pass --model_path and/or --config")
    videos = find_videos(args.videos)
    count = int(args.seconds * args.fps)
    print(f"stream: {count} frames ({args.seconds:g} s at {args.fps:g} fps) of {args.videos}; "
          f"context {args.context}, look-ahead {args.lookahead} steps")
    print("| model | threads | frames/s | real-time factor | ms/frame | offline window rerun each step, "
          "ms/frame (x streamed) | gloss look-ahead, frames (ms) | latency at 1x, median / p95 ms "
          "| dropped at 1x | dropped at 2x | latency at 2x, median / p95 ms | state held MiB "
          "| process RSS MiB (peak) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    models = []
    if args.model_path:
        loaded = load_model(args.model_path, "cpu")
        models.append((f"{Path(args.model_path).name} ({loaded.input_size} px)", loaded))
    with tempfile.TemporaryDirectory() as tmp:
        if args.config:
            for size in args.sizes:
                loaded = random_model(args.config, Path(tmp))
                loaded.input_size, loaded.frame_size = size, (size * 8 // 7, size * 8 // 7)
                models.append((f"{Path(args.config).stem} random weights ({size} px)", loaded))
        for index, (name, loaded) in enumerate(models):
            frames = stream_frames(videos, loaded.frame_size, count)
            folder = export_stream(loaded, Path(tmp) / f"stream{index}") if args.onnx else None
            for threads in args.threads:
                run(name, loaded, frames, args, threads)
                if folder is not None:  # the same pieces exported, through the same recogniser
                    torch.set_num_threads(threads)  # onnxruntime sessions take it when created
                    run(f"{name}, ONNX fp32 pieces", load_stream_export(folder), frames, args, threads)


if __name__ == "__main__":
    main()
