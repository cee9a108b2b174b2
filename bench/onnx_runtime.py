"""onnxruntime fp32 vs int8 vs PyTorch eager on the videos of a split, CPU, side by side.

Exports the model's default graph (uint8 frames in) twice, fp32 and int8 (calibrated on
`--calibration` videos of the training split), then for each thread count runs every video
through the three, rotating which goes first; reports ms per video, the ratios to eager, the max
|log-prob| difference to eager and how many decoded sentences equal eager's. The eager time
includes the feeder's input preparation, as the graphs' does.

    python bench/onnx_runtime.py --model_path work_dir/demo/best_model.pt \
        --videos demo_data/phoenix2014/features/fullFrame-56x56px/test \
        --calibration demo_data/phoenix2014/features/fullFrame-56x56px/train
    python bench/onnx_runtime.py --config config/baseline.yaml --limit 2 ...  # random weights
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.loading import LoadedModel, load_model, model_config  # noqa: E402
from model_building import model_class, model_kwargs  # noqa: E402
from inference.onnx_model import calibration_videos, export_onnx, load_onnx_model  # noqa: E402
from inference.recognize import clip_log_probs, decode_sentence  # noqa: E402
from inference.video import find_videos, load_frames  # noqa: E402
from utils.checkpoint import save_checkpoint  # noqa: E402


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model_path", help="checkpoint (.pt) of main.py")
    model.add_argument("--config", help="a config's model with random weights (speed only)")
    parser.add_argument("--videos", required=True, help="split to run: frame folders or video files")
    parser.add_argument("--calibration", required=True, help="training split for the int8 ranges")
    parser.add_argument("--calibration_videos", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per video and path")
    parser.add_argument("--limit", type=int, default=0, help="first N videos only (0 = all)")
    return parser.parse_args()


def random_model(config: str, folder: Path) -> LoadedModel:
    """The model of `config` with seeded random weights, saved and loaded as a checkpoint."""
    cfg = model_config(None, config)
    num_classes = 1296  # the published PHOENIX-2014 vocabulary size (with the blank)
    gloss_dict = {f"G{i}": [i, 1] for i in range(1, num_classes)}
    cls = model_class(cfg["model"])
    kwargs, _ = model_kwargs(cfg, cls, num_classes)
    torch.manual_seed(0)
    model = cls(**{**kwargs, "pretrained": None})
    path = folder / "random.pt"
    save_checkpoint(path, {"model_state_dict": model.state_dict(), "model_args": kwargs,
                           "config": {k: cfg[k] for k in ("model", "feeder_args", "decode") if k in cfg},
                           "gloss_dict": gloss_dict})
    return load_model(path, "cpu")


def main() -> None:
    """Export fp32 and int8, run the three paths per thread count, print the comparison."""
    args = parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        eager = load_model(args.model_path, "cpu") if args.model_path else \
            random_model(args.config, Path(tmp))
        calibration = calibration_videos(args.calibration, eager.frame_size, args.calibration_videos)
        fp32 = export_onnx(eager, Path(tmp) / "fp32.onnx")
        int8 = export_onnx(eager, Path(tmp) / "int8.onnx", calibration=calibration)
        sizes = {name: os.path.getsize(p) / 2**20 for name, p in (("fp32", fp32), ("int8", int8))}
        videos = find_videos(args.videos)[:args.limit or None]
        if not videos:
            sys.exit(f"error: no videos under {args.videos}")
        clips = [load_frames(v, size=eager.frame_size).frames for v in videos]
        print(f"{len(clips)} videos ({sum(map(len, clips))} frames, {eager.frame_size[0]}x"
              f"{eager.frame_size[1]} -> {eager.input_size} px), {args.repeats} runs each; "
              f"graphs fp32 {sizes['fp32']:.1f} MiB, int8 {sizes['int8']:.1f} MiB "
              f"(int8 calibrated on {len(calibration)} videos); load average before: "
              f"{os.getloadavg()[0]:.1f}; export {time.perf_counter() - start:.0f} s")
        for threads in args.threads:
            torch.set_num_threads(threads)
            # onnxruntime sessions take torch's thread count when they are created
            paths = {"eager": eager, "ort fp32": load_onnx_model(fp32), "ort int8": load_onnx_model(int8)}
            times = dict.fromkeys(paths, 0.0)
            worst, equal = dict.fromkeys(paths, 0.0), dict.fromkeys(paths, 0)
            for n, frames in enumerate(clips):
                outputs = {}
                order = list(paths)
                order = order[n % 3:] + order[:n % 3]
                for _ in range(args.repeats):
                    for name in order:
                        t0 = time.perf_counter()
                        outputs[name] = clip_log_probs(paths[name], frames)
                        times[name] += time.perf_counter() - t0
                ref = outputs["eager"][0][0, :int(outputs["eager"][1][0])]
                sentence = decode_sentence(eager, ref)
                for name, (log_probs, lengths) in outputs.items():
                    got = log_probs[0, :int(lengths[0])]
                    worst[name] = max(worst[name], float((got - ref).abs().max()))
                    equal[name] += decode_sentence(eager, got) == sentence
            runs = len(clips) * args.repeats
            print(f"{threads} thread(s), load average {os.getloadavg()[0]:.1f}:")
            for name in paths:
                print(f"  {name:9s} {1000 * times[name] / runs:9.1f} ms per video  "
                      f"x{times[name] / times['eager']:.2f} of eager  max |log p - eager| "
                      f"{worst[name]:.3g}  sentences equal {equal[name]}/{len(clips)}")


if __name__ == "__main__":
    main()
