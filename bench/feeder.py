"""Feeder throughput and bytes per frame: per-frame PNG files against the raw, PNG and JPEG packs.

    .venv/bin/python bench/feeder.py [--size small] [--style camera] [--repeats 3] [--cold]

Generates a synthetic PHOENIX-2014 dataset (camera-like frames by default: drawn frames compress
far better than video and would flatter the packs), resizes it to --res as the preprocessing
does, writes the train split's pack in each format, then reads every training video through
BaseFeeder with the training augmentation (224 crops, temporal rescale, flip), alternating the
paths, one process, one thread. Prints bytes per frame, videos/s and the ratios to the per-frame
path. Warm page cache by default (every path read once first); --cold drops the page cache
(`echo 3 > /proc/sys/vm/drop_caches`, needs root) before each timed read instead.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dataset.feeder import BaseFeeder  # noqa: E402
from dataset.feeder_options import FeederOptions  # noqa: E402
from dataset.packed import DEFAULT_JPEG_QUALITY, write_packed  # noqa: E402
from dataset.registry import dataset_spec  # noqa: E402
from dataset.synthetic import generate  # noqa: E402
from preprocess.cli import main as preprocess_main  # noqa: E402
from preprocess.pack import split_videos  # noqa: E402

PACKS = ("raw", "png", "jpeg")


def videos_per_second(feeder: BaseFeeder, seed: int, cold: bool) -> float:
    """Read every video of `feeder` once (cold: after dropping the page cache); videos per second."""
    if cold:
        drop_page_cache()
    torch.manual_seed(seed)
    start = time.perf_counter()
    for index in range(len(feeder)):
        feeder[index]
    return len(feeder) / (time.perf_counter() - start)


def drop_page_cache() -> None:
    """Write back and drop the kernel's page cache (root only), so that reads come from the disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as error:
        raise SystemExit(f"--cold: cannot drop the page cache ({error}); run as root or without --cold") from None


def prepare(work: Path, size: str, style: str, res: str) -> tuple[Path, Path]:
    """Generate and resize a synthetic PHOENIX-2014 set; returns (root, output dir)."""
    root, out = work / "phoenix2014", work / "preprocess"
    counts = generate("phoenix2014", root, size=size, seed=0, workers=2, style=style)
    print(f"synthetic phoenix2014 ({size}, {style}): {counts['videos']} videos, {counts['frames']} frames")
    status = preprocess_main("phoenix2014", ["--dataset-root", str(root), "--output-dir", str(out),
                                             "--output-res", res, "-p", "-m", "--workers", "2"])
    if status != 0:
        raise SystemExit(status)
    return root, out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="small", choices=("tiny", "small", "demo", "long"))
    parser.add_argument("--style", default="camera", choices=("camera", "clean"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--res", default="256x256px")
    parser.add_argument("--quality", type=int, default=DEFAULT_JPEG_QUALITY)
    parser.add_argument("--cold", action="store_true", help="drop the page cache before every timed read")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root, out = prepare(Path(tmp), args.size, args.style, args.res)
        gloss_dict = np.load(out / "gloss_dict.npy", allow_pickle=True).item()
        info = np.load(out / "train_info.npy", allow_pickle=True).item()
        spec = dataset_spec("phoenix2014")
        videos = split_videos(spec, root, info, args.res)
        frames = sum(len(f) for _, f in videos)
        common = dict(dataset=spec, mode="train", info_dir=out)
        options = dict(input_size=args.crop, frames_res=args.res, temporal_min_len=8)
        feeders = {"per-frame PNG": BaseFeeder(str(root), gloss_dict, options=FeederOptions.recipe(**options),
                                               **common)}
        bytes_per_frame = {"per-frame PNG": sum(os.path.getsize(p) for _, f in videos for p in f) / frames}
        for fmt in PACKS:
            start = time.perf_counter()
            index = write_packed(out / f"pack-{fmt}", "train", videos, fmt, args.quality)
            name = f"{fmt} pack" + (f" q{args.quality}" if fmt == "jpeg" else "")
            print(f"wrote {name}: {time.perf_counter() - start:.1f} s")
            feeders[name] = BaseFeeder(str(root), gloss_dict, options=FeederOptions.recipe(packed=True, **options),
                                       packed_dir=out / f"pack-{fmt}", **common)
            bytes_per_frame[name] = index["data_bytes"] / frames
        if not args.cold:
            for feeder in feeders.values():  # warm the page cache for every path
                videos_per_second(feeder, 0, False)
        rates: dict[str, list[float]] = {name: [] for name in feeders}
        for repeat in range(args.repeats):
            for name, feeder in feeders.items():  # alternating: noise hits every path alike
                rates[name].append(videos_per_second(feeder, repeat, args.cold))
        cache = "cold page cache (dropped before each read)" if args.cold else "warm page cache"
        print(f"train videos: {len(videos)} (mean {frames / len(videos):.1f} frames), {args.res} frames, "
              f"{args.crop} crops, 1 process, 1 thread, {cache}, best of {args.repeats}")
        base, raw = max(rates["per-frame PNG"]), bytes_per_frame["raw pack"]
        print(f"{'path':18} {'bytes/frame':>12} {'vs raw':>8} {'videos/s':>9} {'vs PNG path':>12}")
        for name in feeders:
            best = max(rates[name])
            print(f"{name:18} {bytes_per_frame[name]:12.0f} {bytes_per_frame[name] / raw:8.3f} "
                  f"{best:9.1f} {best / base:11.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
