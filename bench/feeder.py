"""Feeder throughput: per-frame PNG decoding vs the packed memory-mapped cache, side by side.

    .venv/bin/python bench/feeder.py [--size small] [--repeats 3] [--root DIR]

Generates a synthetic PHOENIX-2014 dataset (unless --root points at one already preprocessed),
preprocesses it with --pack, then reads every training video through BaseFeeder with the
training augmentation, alternating the two paths, and prints videos/s of each and the ratio.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dataset.feeder import BaseFeeder  # noqa: E402
from dataset.synthetic import generate  # noqa: E402
from preprocess.cli import main as preprocess_main  # noqa: E402


def videos_per_second(feeder: BaseFeeder, seed: int) -> float:
    """Read every video of `feeder` once; return videos per second."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    for index in range(len(feeder)):
        feeder[index]
    return len(feeder) / (time.perf_counter() - start)


def prepare(work: Path, size: str, res: str) -> tuple[Path, Path]:
    """Generate and preprocess (with --pack) a synthetic PHOENIX-2014 set; returns (root, output dir)."""
    root, out = work / "phoenix2014", work / "preprocess"
    counts = generate("phoenix2014", root, size=size, seed=0, workers=2)
    print(f"synthetic phoenix2014 ({size}): {counts['videos']} videos, {counts['frames']} frames")
    status = preprocess_main("phoenix2014", ["--dataset-root", str(root), "--output-dir", str(out),
                                             "--output-res", res, "-p", "-m", "--workers", "2", "--pack"])
    if status != 0:
        raise SystemExit(status)
    return root, out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="small", choices=("tiny", "small", "demo"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--res", default="256x256px")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root, out = prepare(Path(tmp), args.size, args.res)
        gloss_dict = np.load(out / "gloss_dict.npy", allow_pickle=True).item()
        common = dict(dataset="phoenix2014", mode="train", input_size=args.crop, info_dir=out,
                      frames_res=args.res, temporal_min_len=8)
        plain = BaseFeeder(str(root), gloss_dict, **common)
        packed = BaseFeeder(str(root), gloss_dict, packed=True, **common)
        videos_per_second(plain, 0), videos_per_second(packed, 0)  # warm the page cache for both
        plain_rates, packed_rates = [], []
        for repeat in range(args.repeats):
            plain_rates.append(videos_per_second(plain, repeat))
            packed_rates.append(videos_per_second(packed, repeat))
        plain_best, packed_best = max(plain_rates), max(packed_rates)
        frames = sum(int(e["num_frames"]) for e in plain.inputs_list)
        print(f"videos: {len(plain)} (mean {frames / len(plain):.1f} frames), crop {args.crop}, "
              f"1 thread, best of {args.repeats}")
        print(f"plain per-frame PNG : {plain_best:8.1f} videos/s")
        print(f"packed memmap       : {packed_best:8.1f} videos/s")
        print(f"ratio packed/plain  : {packed_best / plain_best:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
