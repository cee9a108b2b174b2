"""Time one training step (forward, backward, Adam) of SLRModel against the Conv3d formulation.

Both run the same weights on the same input, alternating step by step, and the script prints
the median wall time and process CPU time of a step and their ratios
(`python bench/model_step.py [--size 224 --frames 20 --threads 1 --bf16 ...]`). On a shared
machine the CPU-time ratio with `--threads 1` is the steadiest figure.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules.conv3d_reference import conv3d_reference  # noqa: E402
from slr_network import SLRModel  # noqa: E402

LOSS_WEIGHTS = {"SeqCTC": 1.0, "ConvCTC": 1.0, "Dist": 25.0, "Cu": 0.0005, "Cp": 0.0005}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet34", choices=["resnet18", "resnet34"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=112, help="input height = width")
    parser.add_argument("--classes", type=int, default=1296)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                        help="memory format of the fast path (auto: on for CUDA only)")
    parser.add_argument("--bf16", action="store_true", help="both models under CPU bf16 autocast")
    return parser.parse_args()


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: tuple,
               bf16: bool) -> tuple[float, float]:
    """One forward/backward/Adam step; returns its (wall, process CPU) time in seconds."""
    x, len_x, label, label_lgt = batch
    wall, cpu = time.perf_counter(), time.process_time()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model.criterion_calculation(model(x, len_x), label, label_lgt)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    """Build both formulations, warm up, time alternating steps, print the ratio."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
    fast = SLRModel(args.classes, args.arch, 2, loss_weights=LOSS_WEIGHTS,
                    channels_last=channels_last).train()
    reference = conv3d_reference(fast).train()
    x = torch.rand(args.batch, args.frames, 3, args.size, args.size) * 2 - 1
    len_x = torch.full((args.batch,), args.frames)
    label = torch.randint(1, args.classes, (args.batch,))
    batch = (x, len_x, label, torch.ones(args.batch, dtype=torch.long))
    runs = {name: (model, torch.optim.Adam(model.parameters(), lr=1e-4))
            for name, model in (("2-D fast path", fast), ("Conv3d original", reference))}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for name, (model, optimizer) in runs.items():  # warm-up: allocator, oneDNN primitives
        train_step(model, optimizer, batch, args.bf16)
    for _ in range(args.steps):
        for name, (model, optimizer) in runs.items():
            times[name].append(train_step(model, optimizer, batch, args.bf16))
    print(f"{args.arch}, B={args.batch}, T={args.frames}, {args.size}x{args.size}, "
          f"{torch.get_num_threads()} threads, channels_last={args.channels_last}, "
          f"bf16={args.bf16}, {args.steps} timed steps each, torch {torch.__version__}")
    medians = {}
    for name, values in times.items():
        medians[name] = [statistics.median(v[i] for v in values) for i in (0, 1)]
        print(f"  {name:16s} wall {medians[name][0]:7.3f} s/step   CPU {medians[name][1]:7.3f} s/step"
              f"   (wall runs: {', '.join(f'{v[0]:.2f}' for v in values)})")
    fast_t, ref_t = medians["2-D fast path"], medians["Conv3d original"]
    print(f"speed-up (Conv3d / 2-D): wall {ref_t[0] / fast_t[0]:.2f}x, CPU time {ref_t[1] / fast_t[1]:.2f}x")
    walls = [v[0] for values in times.values() for v in values]
    if max(walls) > 1.5 * min(walls) * max(ref_t[0] / fast_t[0], fast_t[0] / ref_t[0]):
        print("warning: step times vary a lot (busy machine?); the ratios are unreliable, rerun "
              "with --threads 1 and more --steps")


if __name__ == "__main__":
    main()
