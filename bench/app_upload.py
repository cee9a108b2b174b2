"""Upload-to-glosses time of app.py's JSON endpoint for a synthetic video, and the server's memory.

Starts `app.py` on localhost, posts a PHOENIX-sized (210x260) synthetic mp4 of --frames frames
`--requests` times, and prints the time from sending the upload to having the glosses (client
side: upload, decoding, network, CTC decoding, alignment, answer) and the server's resident memory.

    python bench/app_upload.py --model_path work_dir/demo/best_model.pt [--frames 150]
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.full_scale import status_kib  # noqa: E402
from dataset.registry import dataset_spec  # noqa: E402
from dataset.synthetic import plan_videos, render_video  # noqa: E402
from inference.video import write_video  # noqa: E402


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--requests", type=int, default=5)
    return parser.parse_args()


def synthetic_mp4(path: Path, frames: int) -> None:
    """A signing video of `frames` frames (synthetic sentences concatenated), H.264 mp4."""
    clips, n = [], 0
    while sum(len(c) for c in clips) < frames:
        clips.append(render_video(plan_videos(dataset_spec("phoenix2014"), "demo", 0)[n], 210, 260, (5, 6)))
        n += 1
    bgr = np.concatenate(clips)[:frames]
    write_video(path, np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in bgr]), lossless=False)


def memory_mib(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process in MiB, from /proc."""
    return tuple(kib / 1024 for kib in status_kib(pid, "VmRSS", "VmHWM"))


def main() -> None:
    """Start the server, time the uploads, print the figures, stop the server."""
    import httpx

    args = parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.mp4"
        synthetic_mp4(video, args.frames)
        start = time.perf_counter()
        server = subprocess.Popen([sys.executable, "app.py", "--model_path", args.model_path,
                                   "--port", str(port), "--device", "cpu"], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True)
        try:
            while "serving" not in (line := server.stdout.readline()):
                if not line and server.poll() is not None:
                    sys.exit("error: app.py did not start")
            url = f"http://127.0.0.1:{port}/api/recognize"
            idle = memory_mib(server.pid)
            print(f"server start {time.perf_counter() - start:.1f} s; memory idle {idle[0]:.0f} MiB")
            times = []
            for _ in range(args.requests):
                start = time.perf_counter()
                answer = httpx.post(url, files={"video": ("clip.mp4", video.read_bytes())}, timeout=600)
                times.append(time.perf_counter() - start)
                answer.raise_for_status()
            result = answer.json()
            now, peak = memory_mib(server.pid)
            print(f"{args.frames}-frame video ({video.stat().st_size / 1024:.0f} KiB): upload to glosses "
                  f"median {statistics.median(times):.2f} s, first {times[0]:.2f} s "
                  f"({args.requests} requests; {len(result['glosses'])} glosses)")
            print(f"server memory: {now:.0f} MiB resident, peak {peak:.0f} MiB")
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
