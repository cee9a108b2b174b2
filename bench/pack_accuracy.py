"""PNG frames against the JPEG frame pack: does training from the pack cost accuracy?

    .venv/bin/python bench/pack_accuracy.py --root /tmp/packacc                # 3 seeds x 2 sources
    .venv/bin/python bench/pack_accuracy.py --root /tmp/packacc --parallel 2   # two runs at a time

Makes the demo's data as `make demo` does (synthetic PHOENIX-2014 format, `--size demo`, seed 0,
resized to 56x56 px) and packs it with the recommended `--pack` (JPEG q90), then trains
`config/demo.yaml` once per seed from the PNG frames and once from the pack
(`feeder_args.packed`), each a separate `main.py` run that differs only in `random_seed` and the
source. It prints each run's best dev WER and the test WER of its best checkpoint, the mean and
spread per source, and how far apart the two sources' inputs are: the mean absolute difference
of every test video's float32 frames after the test transform (in 0-255 pixel units), PNG against
pack. Runs already finished in `--root` are read back, not repeated.

Each run uses `--threads` torch threads (1 by default: with `--parallel 2` the two runs then fill
the 2 cores without OpenMP threads competing); threads change float32 sums, so compare only runs
made with the same setting.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train_epoch import prepare  # noqa: E402
from dataset.feeder import BaseFeeder  # noqa: E402
from dataset.feeder_options import FeederOptions  # noqa: E402
from dataset.registry import dataset_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SOURCES = {"PNG frames": False, "JPEG pack (q90)": True}
RES, CROP = "56x56px", 48  # config/demo.yaml's frames_res and input_size


@dataclass(frozen=True)
class TrainRun:
    """One training run: its source of frames and its seed."""

    source: str
    seed: int

    @property
    def name(self) -> str:
        """Folder name of the run."""
        return f"{'pack' if SOURCES[self.source] else 'png'}-seed{self.seed}"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="work folder (data, runs); reused")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--num-epoch", type=int, default=None, help="epochs per run (default: demo.yaml's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--size", default="demo", help="synthetic dataset size (demo = make demo's)")
    return parser.parse_args()


def train_command(run: TrainRun, root: Path, num_epoch: int | None) -> list[str]:
    """main.py's command line for one run."""
    command = [sys.executable, str(REPO / "main.py"), "--config", str(REPO / "config" / "demo.yaml"),
               "--overwrite", "--work-dir", str(root / "runs" / run.name),
               "--set", f"dataset_info.dataset_root={root / 'phoenix2014'}",
               "--set", f"dataset_info.dict_path={root / 'preprocess' / 'gloss_dict.npy'}",
               "--set", f"random_seed={run.seed}",
               "--set", f"feeder_args.packed={'true' if SOURCES[run.source] else 'false'}"]
    return command + (["--num-epoch", str(num_epoch)] if num_epoch is not None else [])


def train(run: TrainRun, root: Path, num_epoch: int | None, threads: int) -> dict:
    """Train one run (or read back its finished result); returns its train_results.json."""
    results = root / "runs" / run.name / "train_results.json"
    if not results.is_file():
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        log = root / "runs" / f"{run.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            status = subprocess.run(train_command(run, root, num_epoch), cwd=REPO, env=env,
                                    stdout=out, stderr=subprocess.STDOUT).returncode
        if status != 0:
            raise SystemExit(f"{run.name} failed (exit {status}); see {log}")
    return json.loads(results.read_text())


def input_difference(root: Path) -> dict[str, float]:
    """Mean and max absolute difference (0-255 units) and PSNR of the test split's inputs after the
    test transform, PNG frames against the pack, over every frame of every test video."""
    pre = root / "preprocess"
    gloss_dict = np.load(pre / "gloss_dict.npy", allow_pickle=True).item()
    common = dict(dataset=dataset_spec("phoenix2014"), mode="test", transform_mode=False, info_dir=pre)
    png = BaseFeeder(str(root / "phoenix2014"), gloss_dict,
                     options=FeederOptions.recipe(input_size=CROP, frames_res=RES), **common)
    pack = BaseFeeder(str(root / "phoenix2014"), gloss_dict,
                      options=FeederOptions.recipe(input_size=CROP, frames_res=RES, packed=True), **common)
    total, squares, count, worst = 0.0, 0.0, 0, 0.0
    for index in range(len(png)):
        a, b = png[index][0].double(), pack[index][0].double()
        diff = (a - b).abs()  # the feeder returns uint8 frames (normalised later, on the device)
        total, squares, count = total + float(diff.sum()), squares + float(diff.square().sum()), count + diff.numel()
        worst = max(worst, float(diff.max()))
    psnr = 10 * math.log10(255**2 / (squares / count)) if squares else math.inf
    return {"mean_abs": total / count, "max_abs": worst, "psnr_db": psnr, "values": count}


def summary(results: dict[TrainRun, dict], key: str, source: str) -> str:
    """Mean and standard deviation of one WER over a source's seeds."""
    values = [r[key] for run, r in results.items() if run.source == source]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} +- {spread:.2f}"


def main() -> None:
    """Prepare the data, train every run, print the table."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    prepare(args.root, args.size, RES, workers=2, style="clean")
    runs = [TrainRun(source, seed) for seed in args.seeds for source in SOURCES]
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        done = dict(zip(runs, pool.map(lambda r: train(r, args.root, args.num_epoch, args.threads), runs)))
    diff = input_difference(args.root)
    steps = "/".join(str(s) for s in sorted({r["global_step"] for r in done.values()}))
    print(f"config/demo.yaml, synthetic PHOENIX-2014 '{args.size}' data at {RES}, {args.threads} thread(s) "
          f"per run, {steps} steps per run")
    print(f"{'run':16} {'source':18} {'seed':>4} {'best dev WER %':>15} {'at epoch':>8} {'test WER %':>11}")
    for run, result in done.items():
        print(f"{run.name:16} {run.source:18} {run.seed:>4} {result['best_dev_wer']:>15.2f} "
              f"{result['best_epoch']:>8} {result['test_wer']:>11.2f}")
    for source in SOURCES:
        print(f"{source:18} dev WER {summary(done, 'best_dev_wer', source)} %, "
              f"test WER {summary(done, 'test_wer', source)} % (mean +- sd over seeds {args.seeds})")
    print(f"inputs after the test transform, PNG vs pack: mean |diff| {diff['mean_abs']:.3f}, "
          f"max |diff| {diff['max_abs']:.0f} (0-255 units), PSNR {diff['psnr_db']:.1f} dB ({diff['values']} values)")


if __name__ == "__main__":
    main()
