"""Training-loop throughput (videos/s): the original's path, our default and a fast recipe, side by side.

    .venv/bin/python bench/train_epoch.py                      # published sizes (slow on a CPU)
    .venv/bin/python bench/train_epoch.py --crop 112 --res 128x128px --frame-interval 4

Each path is a full training loop: a DataLoader with worker processes reading the feeder with
the training augmentation, the forward pass, the loss, the backward pass and an Adam step, at
batch 2 on camera-like synthetic PHOENIX-2014 videos of PHOENIX-like lengths (`--size long`:
40-312 frames; `--frame-interval k` keeps every k-th frame to shorten them on a CPU, the same
option the feeder has). The paths:

- original: per-frame PNG feeder, the Conv3d formulation (tests/reference/conv3d.py), float32
  (fp16 autocast on CUDA, as the original trains);
- default: our defaults (the same PNG feeder, the 2-D formulation, float32);
- recommended: the recipe of `--recipe` (config/fast_train.yaml): packed frames, length
  bucketing, its amp setting and its `compile` mode (the training forward torch.compiled as
  `main.py` does it; its compile time is part of the warm-up round).

All three start from the same weights and see batches drawn by the same seeds. Rounds of
`--steps` steps alternate the paths (A, B, C, then C, B, A, ...), so that a busy machine slows
each alike; each round's loader starts afresh (its start-up is part of an epoch's cost). The
script prints videos/s per round, the medians and the ratios to the original's path.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset.bucketing import LengthBucketBatchSampler  # noqa: E402
from dataset.feeder import BaseFeeder  # noqa: E402
from dataset.feeder_options import FeederOptions  # noqa: E402
from dataset.registry import dataset_spec  # noqa: E402
from dataset.synthetic import generate  # noqa: E402
from tests.reference.conv3d import conv3d_reference  # noqa: E402
from preprocess.cli import main as preprocess_main  # noqa: E402
from seq_scripts import train_epoch  # noqa: E402
from slr_network import SLRModel  # noqa: E402
from training.run import Run  # noqa: E402
from training.state import StepOptions  # noqa: E402
from utils.compile import check_compile_mode, compile_for_training  # noqa: E402
from utils.device import amp_dtype, make_grad_scaler, worker_init  # noqa: E402
from utils.random_state import SeededDataset  # noqa: E402

LOSS_WEIGHTS = {"SeqCTC": 1.0, "ConvCTC": 1.0, "Dist": 25.0, "Cu": 0.0005, "Cp": 0.0005}
REPO = Path(__file__).resolve().parents[1]


@dataclass
class TrainPath:
    """One training path: how its batches are read and how its model runs."""

    name: str
    packed: bool
    bucketing: bool
    conv3d: bool
    amp: str
    compile: str = "none"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="work folder to keep the data in (default: temp)")
    parser.add_argument("--size", default="long", help="synthetic dataset size (long = PHOENIX-like)")
    parser.add_argument("--res", default="256x256px", help="preprocessed frame size")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--frame-interval", type=int, default=1,
                        help="keep every k-th frame (shortens videos on a CPU; 1 = real lengths)")
    parser.add_argument("--arch", default="resnet34", choices=("resnet18", "resnet34"))
    parser.add_argument("--steps", type=int, default=3, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per path (alternating)")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--recipe", type=Path, default=REPO / "config" / "fast_train.yaml")
    parser.add_argument("--paths", default="original,default,recommended")
    return parser.parse_args()


def prepare(work: Path, size: str, res: str, workers: int = 2, style: str = "camera") -> tuple[Path, Path]:
    """Synthetic PHOENIX-2014 data (camera-like by default), preprocessed with --pack (reused if present)."""
    root, out = work / "phoenix2014", work / "preprocess"
    if not (out / "gloss_dict.npy").is_file():
        if not root.is_dir():
            counts = generate("phoenix2014", root, size=size, seed=0, workers=workers, style=style)
            print(f"synthetic phoenix2014 ({size}, {style}): {counts['videos']} videos, "
                  f"{counts['frames']} frames")
        status = preprocess_main("phoenix2014", ["--dataset-root", str(root), "--output-dir",
                                                 str(out), "--output-res", res, "-p", "-m",
                                                 "--workers", str(workers), "--pack"])
        if status != 0:
            raise SystemExit(status)
    return root, out


def recipe_path(recipe: Path) -> TrainPath:
    """The recommended path from the recipe config (its feeder, sampler, amp and compile keys)."""
    cfg = yaml.safe_load(recipe.read_text())
    return TrainPath("recommended", packed=bool(cfg.get("feeder_args", {}).get("packed", False)),
                     bucketing=bool(cfg.get("length_bucketing", {}).get("enabled", False)),
                     conv3d=False, amp=str(cfg.get("amp", "none")),
                     compile=str(cfg.get("compile", "none")))


def loader_for(path: TrainPath, feeder: BaseFeeder, args: argparse.Namespace, seed: int
               ) -> torch.utils.data.DataLoader:
    """A training loader as main.py builds it, with `args.workers` processes."""
    dataset = SeededDataset(feeder, seed)
    if path.bucketing:
        sampler = LengthBucketBatchSampler(feeder.video_lengths(), 2, seed=seed)
        batching = {"batch_sampler": sampler}
    else:
        generator = torch.Generator().manual_seed(seed)
        batching = {"batch_size": 2, "shuffle": True, "drop_last": True, "generator": generator}
    return torch.utils.data.DataLoader(dataset, num_workers=args.workers,
                                       collate_fn=feeder.collate_fn, worker_init_fn=worker_init,
                                       persistent_workers=False, **batching)


def main() -> None:
    """Build the three paths on the same weights, time their training loops, print the ratios."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.root or Path(tmp)
        root, out = prepare(work, args.size, args.res)
        gloss_dict = np.load(out / "gloss_dict.npy", allow_pickle=True).item()
        paths = {p.name: p for p in (
            TrainPath("original", False, False, True, "fp16" if device.type == "cuda" else "none"),
            TrainPath("default", False, False, False, "none"),
            recipe_path(args.recipe))}
        paths = {name: paths[name] for name in args.paths.split(",")}
        torch.manual_seed(0)
        base = SLRModel(len(gloss_dict) + 1, args.arch, 2, loss_weights=LOSS_WEIGHTS)
        feeders, runs = {}, {}
        for name, path in paths.items():
            options = FeederOptions.recipe(input_size=args.crop, frames_res=args.res, packed=path.packed,
                                           frame_interval=args.frame_interval)
            feeders[name] = BaseFeeder(str(root), gloss_dict, dataset_spec("phoenix2014"), options, mode="train",
                                       info_dir=out)
            model = (conv3d_reference(base) if path.conv3d else _copy(base)).to(device).train()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
            dtype = amp_dtype(path.amp, device)
            check_compile_mode(path.compile, device)
            runner = model if path.compile == "none" else compile_for_training(model, path.compile)
            runs[name] = (runner, model, optimizer,
                          make_grad_scaler(device, dtype),
                          StepOptions.recipe(device=device, amp_dtype=dtype, log_interval=0,
                                             max_steps=args.steps, progress_bar=False,
                                             compiled=path.compile != "none"))
        lengths = feeders["default" if "default" in feeders else next(iter(feeders))].video_lengths()
        print(f"{args.arch}, batch 2, crop {args.crop} of {args.res}, {len(lengths)} training videos "
              f"of {min(lengths)}-{max(lengths)} frames (mean {statistics.mean(lengths):.0f}) read "
              f"every {args.frame_interval} frame(s), {args.workers} loader worker(s), "
              f"{torch.get_num_threads()} torch thread(s), {device}, {args.steps} steps x "
              f"{args.rounds} rounds per path, torch {torch.__version__}")
        for name, path in paths.items():
            print(f"  {name:12s} packed={path.packed} bucketing={path.bucketing} "
                  f"{'Conv3d' if path.conv3d else '2-D frames'} amp={path.amp} "
                  f"compile={path.compile}")
        rates: dict[str, list[float]] = {name: [] for name in paths}
        names = list(paths)
        for round_ in range(args.rounds + 1):  # round 0 warms up every path
            order = names if round_ % 2 == 0 else names[::-1]
            for name in order:
                runner, model, optimizer, scaler, opts = runs[name]
                loader = loader_for(paths[name], feeders[name], args, seed=round_)
                run = Run(core=model, model=runner, optimizer=optimizer, scaler=scaler, opts=opts,
                          log=lambda _msg: None)
                state = run.state
                start = time.perf_counter()
                train_epoch(run, loader, total_batches=len(loader))
                if device.type == "cuda":
                    torch.cuda.synchronize()
                videos = 2 * state.global_step
                if state.skipped_batches:
                    print(f"  warning: {name} skipped {state.skipped_batches} batch(es) with a "
                          f"non-finite loss (videos too short for their glosses after "
                          f"--frame-interval?); they are not counted")
                rate = videos / (time.perf_counter() - start)
                if round_:
                    rates[name].append(rate)
                print(f"  round {round_}{' (warm-up)' if not round_ else ''} {name:12s} "
                      f"{rate:7.3f} videos/s", flush=True)
        medians = {name: statistics.median(v) for name, v in rates.items()}
        print("median videos/s: " + ", ".join(f"{n} {v:.3f}" for n, v in medians.items()))
        if "original" in medians:
            for name in names:
                if name != "original":
                    pairs = [r / o for r, o in zip(rates[name], rates["original"])]
                    print(f"  {name} / original: {medians[name] / medians['original']:.2f}x "
                          f"(per round: {', '.join(f'{p:.2f}' for p in pairs)})")


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    """An independent copy with the same weights."""
    import copy

    return copy.deepcopy(model)


if __name__ == "__main__":
    main()
