"""Time one training step (forward, backward, Adam) of SLRModel against the Conv3d formulation.

Both formulations hold the same weights and see the same input. Steps alternate A, B, A, B...
after warm-up steps, so that a busy machine slows both alike; the script prints the median wall
and process CPU time per step, the median of the per-pair ratios (each pair ran back to back)
and the configuration. `--breakdown` also times the part that differs (frame backbone + hierarchical
branch, forward and backward) and, on the CPU, the forward and backward time of every part of
our step with its convolution / BatchNorm+ReLU shares and the step's FLOP rate against the
CPU's peak (bench/step_breakdown.py).
`--bf16` adds a clearly labelled line with both models under CPU bf16 autocast; the headline
ratio is always fp32 against fp32.

    python bench/model_step.py                       # resnet34, B=1, T=20, 112x112, 1 thread
    python bench/model_step.py --size 224 --steps 3  # the published input size (slower)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules.conv3d_reference import conv3d_reference  # noqa: E402
from bench.step_breakdown import report_breakdown  # noqa: E402
from slr_network import SLRModel  # noqa: E402

LOSS_WEIGHTS = {"SeqCTC": 1.0, "ConvCTC": 1.0, "Dist": 25.0, "Cu": 0.0005, "Cp": 0.0005}
FAST, REFERENCE = "2-D frames (ours)", "Conv3d (original)"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet34", choices=["resnet18", "resnet34"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=112, help="input height = width")
    parser.add_argument("--classes", type=int, default=1296)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: steadiest on a shared machine; 0 = torch's)")
    parser.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                        help="memory format of our path (auto = the model default, on)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time backbone + branch alone (the part the formulations differ in)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (both models run there)")
    parser.add_argument("--bf16", action="store_true",
                        help="extra line: both models under CPU bf16 autocast")
    return parser.parse_args()


def timed(fn: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call; on CUDA the queued kernels are waited for."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: tuple,
               bf16: bool) -> None:
    """One forward/backward/Adam step."""
    x, len_x, label, label_lgt = batch
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = model.criterion_calculation(model(x, len_x), label, label_lgt)
    loss.backward()
    optimizer.step()


def backbone_step(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Forward and backward of the frame backbone and hierarchical branch only."""
    model.zero_grad(set_to_none=True)
    framewise, stages = model.conv2d(x)
    aux = model.csa(stages, x.shape[0])
    (framewise.mean() + sum(a.mean() for a in aux)).backward()


def alternate(calls: dict[str, Callable[[], None]], warmup: int, steps: int,
              device: torch.device) -> dict[str, list[tuple[float, float]]]:
    """Warm up, then time the calls in turn (A, B, A, B, ...); (wall, CPU) per call."""
    for _ in range(warmup):  # allocator, oneDNN primitive caches
        for fn in calls.values():
            fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    for step in range(steps):
        # Swap the order every step so that neither formulation always runs second.
        order = list(calls) if step % 2 == 0 else list(reversed(calls))
        for name in order:
            times[name].append(timed(calls[name], device))
    return times


def report(label: str, times: dict[str, list[tuple[float, float]]]) -> float:
    """Print medians and ratios of one alternating run; returns the median pair wall ratio."""
    print(label)
    for name, values in times.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"  {name:18s} wall {wall:7.3f} s   CPU {cpu:7.3f} s   "
              f"(wall per run: {', '.join(f'{v[0]:.2f}' for v in values)})")
    fast, ref = times[FAST], times[REFERENCE]
    pair_wall = statistics.median(r[0] / f[0] for f, r in zip(fast, ref))
    pair_cpu = statistics.median(r[1] / f[1] for f, r in zip(fast, ref))
    med = {name: [statistics.median(v[i] for v in values) for i in (0, 1)]
           for name, values in times.items()}
    print(f"  speed-up Conv3d / ours: wall {med[REFERENCE][0] / med[FAST][0]:.2f}x, "
          f"CPU {med[REFERENCE][1] / med[FAST][1]:.2f}x (medians); per-pair median: wall "
          f"{pair_wall:.2f}x, CPU {pair_cpu:.2f}x")
    walls = [v[0] for values in times.values() for v in values]
    spread = max(statistics.median(v[0] for v in values) for values in times.values())
    if max(walls) > 1.5 * spread:
        print("  note: some runs were much slower than the medians (busy machine?); the medians "
              "and per-pair ratios discount them, more --steps steadies them further")
    return pair_wall


def main() -> None:
    """Build both formulations on the same weights and input, time them, print the ratios."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
    fast = SLRModel(args.classes, args.arch, 2, loss_weights=LOSS_WEIGHTS,
                    channels_last=channels_last).train()
    reference = conv3d_reference(fast).train()
    fast, reference = fast.to(device), reference.to(device)
    x = (torch.rand(args.batch, args.frames, 3, args.size, args.size) * 2 - 1).to(device)
    len_x = torch.full((args.batch,), args.frames)
    label = torch.randint(1, args.classes, (2 * args.batch,)).to(device)
    batch = (x, len_x, label, torch.full((args.batch,), 2, dtype=torch.long).to(device))
    models = {FAST: fast, REFERENCE: reference}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}
    print(f"{args.arch}, B={args.batch}, T={args.frames}, {args.size}x{args.size}, "
          f"{args.classes} classes, {device}, {torch.get_num_threads()} CPU thread(s), "
          f"channels_last={args.channels_last}, {args.warmup} warm-up + {args.steps} timed steps "
          f"each (alternating), torch {torch.__version__}")
    start = time.perf_counter()

    def steps(bf16: bool) -> dict[str, Callable[[], None]]:
        return {name: (lambda n=name: train_step(models[n], optimizers[n], batch, bf16))
                for name in models}

    times = alternate(steps(False), args.warmup, args.steps, device)
    report("training step, fp32 (headline):", times)
    if args.breakdown:
        calls = {name: (lambda m=m: backbone_step(m, x)) for name, m in models.items()}
        report("backbone + branch only, forward + backward, fp32:",
               alternate(calls, args.warmup, args.steps, device))
        if device.type == "cpu":
            report_breakdown(fast, batch, steps(False)[FAST],
                             statistics.median(t[0] for t in times[FAST]), optimizers[FAST])
    if args.bf16:
        report("training step, both under bf16 autocast (extra, not the headline):",
               alternate(steps(True), args.warmup, args.steps, device))
    print(f"bench time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
