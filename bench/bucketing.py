"""Length bucketing: padded-frame fraction and training videos/s against the plain shuffled sampler.

    .venv/bin/python bench/bucketing.py [--repeats 2] [--batch-size 2] [--res 40x40px]

Generates the synthetic PHOENIX-2014 `long` set (60 training videos of about 50-300 frames, like
PHOENIX's lengths), preprocesses it, and trains one epoch of a small STF-Net through main.py
with each sampler, alternating plain / bucketed runs; prints the padded fraction and the training
videos/s that main.py records in metrics.csv, and their ratios. The frames are small (CPU), so
the figure is the compute that padding wastes, not the data loading.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))


def run_epoch(data: Path, work: Path, bucketing: bool, args: argparse.Namespace) -> dict[str, float]:
    """One training epoch through main.py; (videos/s, padded fraction) from its metrics.csv."""
    crop = int(args.res.split("x")[0]) * 7 // 8
    cfg = {
        "base": str(REPO / "config" / "baseline.yaml"), "work_dir": str(work), "device": "cpu",
        "num_epoch": 1, "batch_size": args.batch_size, "num_worker": 0, "log_interval": 0,
        "progress_bar": False, "tensorboard": False, "eval_splits": [], "test_best": False,
        "dataset_info": {"dataset_root": str(data / "raw"), "dict_path": str(data / "pre" / "gloss_dict.npy")},
        "feeder_args": {"input_size": crop, "frames_res": args.res, "temporal_min_len": 16},
        "model_args": {"c2d_type": "resnet18", "base_width": 8, "hidden_size": 64, "aux_dim": 16,
                       "channels_last": False},
        "decode": {"mode": "max"},
        "length_bucketing": {"enabled": bucketing, "pool_batches": 50},
    }
    path = work.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(cfg))
    subprocess.run([sys.executable, str(REPO / "main.py"), "--config", str(path), "--overwrite"], cwd=REPO,
                   check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    row = next(csv.DictReader(open(work / "metrics.csv")))
    return {"videos_per_s": float(row["videos_per_s"]), "padded_fraction": float(row["padded_fraction"])}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--res", default="40x40px")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        subprocess.run([sys.executable, "-m", "dataset.synthetic", "--format", "phoenix2014", "--out",
                        str(data / "raw"), "--size", "long", "--seed", "0", "--workers", "2"], cwd=REPO, check=True)
        subprocess.run([sys.executable, "preprocess/dataset_preprocess.py", "--dataset-root", str(data / "raw"),
                        "--output-dir", str(data / "pre"), "--output-res", args.res, "-p", "-m", "--workers", "2"],
                       cwd=REPO, check=True, capture_output=True)
        import numpy as np

        from preprocess.common import info_entries

        info = np.load(data / "pre" / "train_info.npy", allow_pickle=True).item()
        lengths = [int(entry["num_frames"]) for entry in info_entries(info)]
        print(f"train videos: {len(lengths)}, {min(lengths)}-{max(lengths)} frames (median "
              f"{int(np.median(lengths))}), batch {args.batch_size}, {args.res} frames, 1 thread, CPU")
        results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for repeat in range(args.repeats):
            for bucketing in (False, True):  # alternating: noise hits both alike
                results[bucketing].append(run_epoch(data, data / f"run-{int(bucketing)}-{repeat}", bucketing, args))
        for bucketing, name in ((False, "plain shuffled"), (True, "length bucketing")):
            best = max(r["videos_per_s"] for r in results[bucketing])
            padded = np.mean([r["padded_fraction"] for r in results[bucketing]])
            print(f"{name:17} padded fraction {padded:6.1%}   {best:6.2f} videos/s (best of {args.repeats})")
        plain = max(r["videos_per_s"] for r in results[False])
        bucket = max(r["videos_per_s"] for r in results[True])
        print(f"ratio bucketing/plain: {bucket / plain:.2f}x videos/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
