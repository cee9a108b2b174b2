"""Videos to training frames: decoded straight into the JPEG pack (ours) against the original way
(every frame extracted to a PNG file, then the PNG resize), on the same videos, side by side.

    .venv/bin/python bench/video_pack.py --work DIR [--videos 12] [--table-videos 1000]

Writes --videos camera-like synthetic sign videos at CSL's 1280x720 (H.264 .mp4, 25 fps) and times,
with one process and with all cores, (a) ours: `preprocess.video_pack` decoding, resizing to
256x256 (Lanczos) and JPEG-encoding every frame into the pack; (b) the original way: PyAV decoding
every frame to a full-size PNG file (what `ffmpeg -i video.avi %06d.png` does; no ffmpeg binary is
needed, so PyAV stands in for it), then this project's resize of those PNGs to 256x256 PNGs (the
original's `-p` step, cv2 Lanczos), plus, to reach the same pack, `--pack` of the resized PNGs.
Bytes on disk of each. Then the whole table path (`python -m preprocess --dataset table`: table
check, decoding into the pack, info files, STMs) on a table of --table-videos rows (the videos
repeated under new ids, each decoded again), extrapolated linearly to CSL's 25,000 videos.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bench.full_scale import disk_bytes  # noqa: E402
from dataset.packed import write_packed  # noqa: E402
from dataset.registry import dataset_spec  # noqa: E402
from dataset.synthetic import SIZES, plan_videos, render_camera_video  # noqa: E402
from dataset.video_files import decode_video, write_video  # noqa: E402
from preprocess.common import ResizeJob, list_frames, run_resize  # noqa: E402
from preprocess.pack import human  # noqa: E402
from preprocess.video_pack import VideoJob, decode_settings, pack_videos  # noqa: E402

SIZE = (256, 256)
CSL_SIZE = (1280, 720)
CSL_VIDEOS = 25_000


def make_videos(folder: Path, count: int) -> list[Path]:
    """`count` camera-like sign videos at CSL's frame size, H.264 at 25 fps."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for video in plan_videos(dataset_spec("phoenix2014"), "small", 0)[:count]:
        path = folder / f"video{len(paths)}.mp4"
        if not path.exists():
            frames = render_camera_video(video, *CSL_SIZE, SIZES["small"].frames_per_gloss)
            write_video(path, np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]), 25, codec="h264")
        paths.append(path)
    return paths


def ours(videos: list[Path], out: Path, workers: int) -> tuple[float, int, int]:
    """Seconds, frames and pack bytes of decoding `videos` straight into a fresh JPEG pack."""
    shutil.rmtree(out, ignore_errors=True)
    jobs = [VideoJob(path.stem, str(path), f"bench:{i}") for i, path in enumerate(videos)]
    start = time.perf_counter()
    packed = pack_videos(out, "train", jobs, decode_settings(SIZE, None, "jpeg", 90), workers, dataset="table")
    return time.perf_counter() - start, sum(packed.frames.values()), disk_bytes(out)


def extract_pngs(args: tuple[str, str]) -> int:
    """Every frame of one video as a full-size PNG file, as `ffmpeg -i VIDEO DIR/%06d.png` writes them."""
    video, folder = args
    Path(folder).mkdir(parents=True, exist_ok=True)
    count = 0
    for count, frame in enumerate(decode_video(video), start=1):
        cv2.imwrite(os.path.join(folder, f"{count:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return count


def original(videos: list[Path], work: Path, workers: int) -> dict[str, float]:
    """Seconds of each step of the original way, and the bytes it leaves."""
    raw, resized, packed = work / "png", work / "png-256", work / "pack"
    for folder in (raw, resized, packed):
        shutil.rmtree(folder, ignore_errors=True)
    jobs = [(str(path), str(raw / path.stem)) for path in videos]
    start = time.perf_counter()
    if workers > 1:
        with Pool(workers) as pool:
            frames = sum(pool.map(extract_pngs, jobs, chunksize=1))
    else:
        frames = sum(extract_pngs(job) for job in jobs)
    extracted = time.perf_counter()
    resize_jobs = [ResizeJob(i, str(raw / path.stem), "*.png", str(resized / path.stem), path.stem)
                   for i, path in enumerate(videos)]
    run_resize(resize_jobs, SIZE, workers=workers, desc="resize")
    resized_at = time.perf_counter()
    split = [(path.stem, [str(resized / path.stem / name) for name in list_frames(resized / path.stem, "*.png")])
             for path in videos]
    write_packed(packed, "train", split, "jpeg", 90)
    done = time.perf_counter()
    return {"frames": frames, "extract": extracted - start, "resize": resized_at - extracted,
            "pack": done - resized_at, "png_bytes": disk_bytes(raw), "resized_bytes": disk_bytes(resized),
            "pack_bytes": disk_bytes(packed)}


def whole_table(videos: list[Path], work: Path, rows: int, workers: int) -> tuple[float, int]:
    """Seconds and pack bytes of `python -m preprocess --dataset table` on a table of `rows` rows."""
    table = work / "table.csv"
    splits = ["train"] * 8 + ["dev", "test"]
    lines = ["video,glosses,split,id"] + [f"{videos[i % len(videos)]},A B,{splits[i % 10]},row{i}"
                                          for i in range(rows)]
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = work / "table-out"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "preprocess", "--dataset", "table", "--table", str(table),
                    "--output-dir", str(out), "--workers", str(workers)], check=True,
                   cwd=Path(__file__).resolve().parent.parent, capture_output=True)
    return time.perf_counter() - start, disk_bytes(out / "packed-256x256px")


def main(argv: list[str] | None = None) -> int:
    """Measure and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a scratch folder (about 1 GB)")
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--table-videos", type=int, default=1000)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    print(f"load average before: {os.getloadavg()[0]:.2f} on {cores} cores")
    videos = make_videos(args.work / "videos", args.videos)
    video_bytes = sum(path.stat().st_size for path in videos)
    results = {}
    for workers in sorted({1, cores}):
        seconds, frames, pack_bytes = ours(videos, args.work / "ours", workers)
        steps = original(videos, args.work, workers)
        results[workers] = (seconds, frames, pack_bytes, steps)
    print(f"{len(videos)} videos, {frames} frames at {CSL_SIZE[0]}x{CSL_SIZE[1]} ({human(video_bytes)} of H.264), "
          f"to {SIZE[0]}x{SIZE[1]}:")
    print(f"{'processes':>9} {'ours fr/s':>10} {'orig. fr/s':>10} {'(extract':>9} {'resize':>7} {'+pack)':>7} "
          f"{'ratio':>6}")
    for workers, (seconds, frames, _bytes, steps) in results.items():
        original_s = steps["extract"] + steps["resize"]
        print(f"{workers:>9} {frames / seconds:>10.1f} {frames / original_s:>10.1f} "
              f"{frames / steps['extract']:>9.1f} {frames / steps['resize']:>7.1f} {frames / steps['pack']:>7.1f} "
              f"{original_s / seconds:>5.1f}x  (to the same pack: {(original_s + steps['pack']) / seconds:.1f}x)")
    seconds, frames, pack_bytes, steps = results[cores]
    print(f"bytes on disk: ours {human(pack_bytes)} (the pack); original {human(steps['png_bytes'])} of full-size "
          f"PNGs + {human(steps['resized_bytes'])} of 256x256 PNGs (+ {human(steps['pack_bytes'])} if packed)")
    rows = args.table_videos
    table_s, table_bytes = whole_table(videos, args.work, rows, cores)
    per_video = frames / len(videos)
    scale = CSL_VIDEOS / rows
    print(f"whole table path, {rows} videos ({rows * per_video:.0f} frames), {cores} processes: {table_s:.0f} s, "
          f"pack {human(table_bytes)}; x{scale:.0f} for {CSL_VIDEOS} videos: {table_s * scale / 3600:.1f} h, "
          f"{human(table_bytes * scale)} (original way at its measured rate: "
          f"{rows * per_video * scale / (frames / (steps['extract'] + steps['resize'])) / 3600:.1f} h, "
          f"{human((steps['png_bytes'] + steps['resized_bytes']) / len(videos) * CSL_VIDEOS)})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
