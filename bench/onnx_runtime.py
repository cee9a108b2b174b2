"""Exported ONNX graph (onnxruntime) vs the PyTorch checkpoint on the videos of a split, CPU.

For every video: the same frames through both (the graph prepares its own input; PyTorch gets the
feeder's), alternating which runs first; reports the
max |log-prob| difference, whether the decoded glosses are equal, and the time of each path.

    python bench/onnx_runtime.py --model_path work_dir/demo/best_model.pt \
        --videos demo_data/phoenix2014/features/fullFrame-210x260px/test [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.loading import load_model  # noqa: E402
from inference.onnx_model import export_onnx  # noqa: E402
from inference.recognize import clip_log_probs, decode_sentence, prepare_input  # noqa: E402
from inference.video import load_frames  # noqa: E402


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", required=True, help="checkpoint (.pt) of main.py")
    parser.add_argument("--videos", required=True,
                        help="folder whose sub-folders (any depth) hold the frames of one video")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per video and path")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of both runtimes")
    parser.add_argument("--limit", type=int, default=0, help="first N videos only (0 = all)")
    return parser.parse_args()


def video_folders(root: Path) -> list[Path]:
    """Folders that directly hold frame images, sorted."""
    return sorted({p.parent for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg")})


def main() -> None:
    """Export, run both paths on every video, print the comparison."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pt = load_model(args.model_path, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        onnx = load_model(export_onnx(pt, Path(tmp) / "model.onnx"))
        folders = video_folders(Path(args.videos))[:args.limit or None]
        if not folders:
            sys.exit(f"error: no frame folders under {args.videos}")
        times = {"pytorch": 0.0, "onnxruntime": 0.0}
        worst, equal, frames = 0.0, 0, 0
        for n, folder in enumerate(folders):
            clip = load_frames(folder, size=pt.frame_size)
            prepared = prepare_input(clip.frames, pt.kernel_sizes, pt.input_size, pt.image_scale)
            frames += prepared.num_frames
            outputs = {}
            order = [("pytorch", pt), ("onnxruntime", onnx)]
            for _ in range(args.repeats):
                for name, model in (order if n % 2 == 0 else order[::-1]):
                    start = time.perf_counter()
                    outputs[name] = clip_log_probs(model, clip.frames, prepared)
                    times[name] += time.perf_counter() - start
            (ref, steps), (got, _) = outputs["pytorch"], outputs["onnxruntime"]
            t = int(steps[0])
            worst = max(worst, float((ref[0, :t] - got[0, :t]).abs().max()))
            equal += decode_sentence(pt, ref[0, :t]) == decode_sentence(onnx, got[0, :t])
    runs = len(folders) * args.repeats
    print(f"{len(folders)} videos ({frames} frames), {args.repeats} runs each, "
          f"{torch.get_num_threads()} threads")
    print(f"max |log p| difference: {worst:.3g}; decoded glosses equal: {equal}/{len(folders)}")
    for name, total in times.items():
        print(f"{name:12s} {1000 * total / runs:8.1f} ms per video")
    print(f"onnxruntime / pytorch time: {times['onnxruntime'] / times['pytorch']:.2f}")


if __name__ == "__main__":
    main()
