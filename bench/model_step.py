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
`--compile MODE` instead times our step eager against our step torch.compiled (utils/compile.py,
what `main.py --compile MODE` trains with; same weights, same batch), after reporting the compile
time (the first compiled step) and the compilations that new video lengths cause after warm-up.
`--model-args CONFIG` takes the model from a config file's model_args (e.g. config/demo.yaml).

    python bench/model_step.py                       # resnet34, B=1, T=20, 112x112, 1 thread
    python bench/model_step.py --size 224 --steps 3  # the published input size (slower)
    python bench/model_step.py --compile default     # eager vs torch.compile (inductor)
    python bench/model_step.py --compile default --model-args config/demo.yaml --batch 4 \
        --frames 40 --size 48 --classes 32           # the demo model
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reference.conv3d import conv3d_reference  # noqa: E402
from modules.criterions import total_loss  # noqa: E402
from bench.step_breakdown import report_breakdown  # noqa: E402
from slr_network import SLRModel  # noqa: E402
from utils.compile import COMPILE_MODES, check_compile_mode, compile_for_training  # noqa: E402
from utils.compile import mark_time_dynamic  # noqa: E402
from utils.config import load_yaml  # noqa: E402

LOSS_WEIGHTS = {"SeqCTC": 1.0, "ConvCTC": 1.0, "Dist": 25.0, "Cu": 0.0005, "Cp": 0.0005}
FAST, REFERENCE = "2-D frames (ours)", "Conv3d (original)"
COMPILED, EAGER = "ours, compiled", "ours, eager"


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
    parser.add_argument("--compile", choices=COMPILE_MODES[1:],
                        help="time our step eager against torch.compile(mode) instead")
    parser.add_argument("--model-args", type=Path,
                        help="a config whose model_args build the model (--arch is then ignored)")
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
               amp: torch.dtype | None, runner: torch.nn.Module | None = None,
               scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """One forward/backward/Adam step under autocast to `amp` (None: float32); the forward
    through `runner` (compiled) when given; fp16 steps through `scaler` when given. Returns
    the (detached) loss."""
    x, len_x, label, label_lgt = batch
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        forward = model if runner is None else runner
        ret = forward(x if runner is None else mark_time_dynamic(x), len_x)
        loss = total_loss(model.loss_terms(ret, label, label_lgt))
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach()


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


def report(label: str, times: dict[str, list[tuple[float, float]]], fast_name: str = FAST,
           ref_name: str = REFERENCE) -> float:
    """Print medians and ratios of one alternating run; returns the median pair wall ratio."""
    print(label)
    for name, values in times.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"  {name:18s} wall {wall:7.3f} s   CPU {cpu:7.3f} s   "
              f"(wall per run: {', '.join(f'{v[0]:.2f}' for v in values)})")
    fast, ref = times[fast_name], times[ref_name]
    pair_wall = statistics.median(r[0] / f[0] for f, r in zip(fast, ref))
    pair_cpu = statistics.median(r[1] / f[1] for f, r in zip(fast, ref))
    med = {name: [statistics.median(v[i] for v in values) for i in (0, 1)]
           for name, values in times.items()}
    print(f"  speed-up {ref_name} / {fast_name}: wall {med[ref_name][0] / med[fast_name][0]:.2f}x, "
          f"CPU {med[ref_name][1] / med[fast_name][1]:.2f}x (medians); per-pair median: wall "
          f"{pair_wall:.2f}x, CPU {pair_cpu:.2f}x")
    walls = [v[0] for values in times.values() for v in values]
    spread = max(statistics.median(v[0] for v in values) for values in times.values())
    if max(walls) > 1.5 * spread:
        print("  note: some runs were much slower than the medians (busy machine?); the medians "
              "and per-pair ratios discount them, more --steps steadies them further")
    return pair_wall


def video_batch(size: int, frames: int, pixels: int, classes: int, device: torch.device) -> tuple:
    """(video, lengths, labels, label lengths): random frames in [-1, 1], two glosses a video."""
    x = (torch.rand(size, frames, 3, pixels, pixels) * 2 - 1).to(device)
    label = torch.randint(1, classes, (2 * size,)).to(device)
    return (x, torch.full((size,), frames), label,
            torch.full((size,), 2, dtype=torch.long).to(device))


def compile_bench(args: argparse.Namespace, eager: SLRModel, batch: tuple,
                  device: torch.device) -> None:
    """Our step eager vs torch.compiled: compile time, recompiles for new lengths, step ratio."""
    from torch._dynamo.utils import counters
    from torch._inductor import config as inductor_config

    check_compile_mode(args.compile, device)
    if args.threads == 1:
        inductor_config.compile_threads = 1  # kernels compiled in this process, one at a time
    twin = copy.deepcopy(eager)
    runner = compile_for_training(twin, args.compile)
    optimizers = {EAGER: torch.optim.Adam(eager.parameters(), lr=1e-4),
                  COMPILED: torch.optim.Adam(twin.parameters(), lr=1e-4)}
    calls = {EAGER: lambda: train_step(eager, optimizers[EAGER], batch, None),
             COMPILED: lambda: train_step(twin, optimizers[COMPILED], batch, None, runner)}
    print(f"{args.arch}, B={args.batch}, T={args.frames}, {args.size}x{args.size}, "
          f"{args.classes} classes, {device}, {torch.get_num_threads()} CPU thread(s), "
          f"channels_last={args.channels_last}, torch.compile mode={args.compile}, "
          f"{args.warmup} warm-up + {args.steps} timed steps each (alternating), "
          f"torch {torch.__version__}")
    start = time.perf_counter()
    eager_first = timed(calls[EAGER], device)
    first = timed(calls[COMPILED], device)
    second = timed(calls[COMPILED], device)
    print(f"first step: eager {eager_first[0]:.2f} s; compiled {first[0]:.1f} s wall, "
          f"{first[1]:.1f} s CPU (compiling forward and backward), then {second[0]:.2f} s; "
          f"{counters['stats']['unique_graphs']} graph(s)")
    times = alternate(calls, args.warmup, args.steps, device)
    report(f"training step, fp32, eager vs torch.compile({args.compile}):", times, COMPILED, EAGER)
    graphs, lengths = counters["stats"]["unique_graphs"], (args.frames + 3, args.frames - 2,
                                                          args.frames + 7, args.frames + 1)
    new_start = time.perf_counter()
    for frames in lengths:  # after warm-up: new lengths must reuse the graph
        step = video_batch(args.batch, frames, args.size, args.classes, device)
        train_step(twin, optimizers[COMPILED], step, None, runner)
    print(f"new lengths {list(lengths)} after warm-up: "
          f"{counters['stats']['unique_graphs'] - graphs} new graph(s) compiled, "
          f"{time.perf_counter() - new_start:.1f} s for the {len(lengths)} steps")
    print(f"bench time {time.perf_counter() - start:.0f} s")


def main() -> None:
    """Build both formulations on the same weights and input, time them, print the ratios."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
    if args.model_args:
        model_args = dict(load_yaml(args.model_args).get("model_args", {}))
        if args.channels_last != "auto":
            model_args["channels_last"] = channels_last
        args.arch = f"{args.model_args} model_args {model_args}"
        fast = SLRModel(args.classes, **model_args, loss_weights=LOSS_WEIGHTS).train()
    else:
        fast = SLRModel(args.classes, args.arch, 2, loss_weights=LOSS_WEIGHTS,
                        channels_last=channels_last).train()
    fast = fast.to(device)
    batch = video_batch(args.batch, args.frames, args.size, args.classes, device)
    if args.compile:
        compile_bench(args, fast, batch, device)
        return
    reference = conv3d_reference(fast).train().to(device)
    x = batch[0]
    models = {FAST: fast, REFERENCE: reference}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}
    print(f"{args.arch}, B={args.batch}, T={args.frames}, {args.size}x{args.size}, "
          f"{args.classes} classes, {device}, {torch.get_num_threads()} CPU thread(s), "
          f"channels_last={args.channels_last}, {args.warmup} warm-up + {args.steps} timed steps "
          f"each (alternating), torch {torch.__version__}")
    start = time.perf_counter()

    def steps(bf16: bool) -> dict[str, Callable[[], None]]:
        amp = torch.bfloat16 if bf16 else None
        return {name: (lambda n=name: train_step(models[n], optimizers[n], batch, amp))
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
