"""Eager against torch.compiled training loops over videos of varied lengths, the demo and the published model.

For each model, an eager copy and a compiled copy (utils/compile.compile_for_training, what
`main.py --compile` trains with) start from the same weights and train on the same batches:
videos of lengths drawn uniformly from a range, padded by the training collate
(dataset/collate.pad_collate), the loss of SLRModel.loss_terms / total_loss, backward, and the
config's optimizer (optimizer_args). Every step runs both copies on the same batch after the
same RNG seed (the BiLSTM's dropout draws the same masks), in alternating order. Per model the
script prints:

- compile time: the first compiled step, plus any later step that compiled a graph, less the
  median compiled step;
- the loop's time: eager, and compiled with and without its compile time;
- the per-step ratio eager / compiled after warm-up: the median over the pairs that compiled
  nothing;
- the graphs compiled: Dynamo graphs (new ones after the first step are recompiles; the reasons
  go to stderr) and inductor graphs (forward and backward), with the steps and lengths;
- per step |loss_eager - loss_compiled| and the parameters after the loop. After the first
  Adam step the two trajectories part: Adam moves every parameter by about the learning rate
  whatever the size of its gradient, so rounding-level gradient differences (e.g. the gradient
  of a bias that BatchNorm cancels, zero in exact arithmetic) become weight differences. The
  yardstick is a third, untimed copy: eager, its initial weights one float32 ulp away from the
  others' (each tensor element moved one step up or down at random). The compiled loop counts as
  equal to eager if its first step's loss (same weights) is within `--first-rtol` and, over the
  loop, its largest loss difference and its final parameter difference are at most `--factor`
  times the ulp copy's;
- the steps after which compiling pays back, and what that means for a PHOENIX-2014 epoch.

The cases (`--models demo,published`):

- demo: config/demo.yaml's model_args and optimizer, 32 classes (its 31 glosses and the blank),
  48 px, batch 4, videos of 30-70 frames (the demo data's lengths), one gloss per 10 frames;
- published: config/phoenix2014.yaml's model_args and optimizer, 1296 classes, batch 2. PHOENIX's
  videos are 50-300 frames of 224 px; a CPU step at that size takes minutes, so the CPU run
  defaults to 64 px and 40-120 frames (`--published-size`, `--published-frames`).

Inductor's compiled graphs go to a fresh cache folder (a cached graph would hide the compile
time); `--keep-cache` uses inductor's usual one. `--dry-run` runs both cases at tiny sizes with
a tiny model (tests/test_bench_compile_loop.py).

    python bench/compile_loop.py                              # both models, 1 thread
    python bench/compile_loop.py --models demo --steps 40
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.model_step import timed, train_step  # noqa: E402
from dataset.collate import pad_collate  # noqa: E402
from slr_network import SLRModel  # noqa: E402
from utils.compile import (BACKEND_ENV, COMPILE_MODES, check_compile_mode,  # noqa: E402
                           compile_for_training)
from utils.config import load_yaml  # noqa: E402
from utils.optimizer import build_optimizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PHOENIX_EPOCH_STEPS = 2836  # PHOENIX-2014's 5,672 training videos at batch 2
DEMO_RUN_STEPS = 1500  # make demo: 200 videos at batch 4, 30 epochs
TINY_MODEL = {"c2d_type": "resnet18", "conv_type": 2, "base_width": 4, "hidden_size": 16,
              "aux_dim": 8}


@dataclass
class Case:
    """One model's loop: where its model and optimizer come from, and the batches it sees."""

    name: str
    config: Path
    classes: int
    size: int
    batch: int
    frames: tuple[int, int]
    steps: int
    frames_per_gloss: int = 10
    model_args: dict = field(default_factory=dict)  # overrides of the config's model_args


@dataclass
class StepRecord:
    """One step of both copies on the same batch (frames: each video's length after padding)."""

    frames: list[int]
    padded: int
    eager_s: float
    compiled_s: float
    eager_loss: float
    compiled_loss: float
    ulp_loss: float
    dynamo_graphs: int
    inductor_graphs: int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="demo,published", help="demo, published or both")
    parser.add_argument("--steps", type=int, help="steps per model (default: demo 100, published 24)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="first steps left out of the per-step ratio")
    parser.add_argument("--published-size", type=int, default=64, help="published model's input px")
    parser.add_argument("--published-frames", default="40-120", help="published model's lengths")
    parser.add_argument("--compile", choices=COMPILE_MODES[1:], default="default")
    parser.add_argument("--first-rtol", type=float, default=1e-5,
                        help="largest |loss_eager - loss_compiled| / |loss_eager| at the first step")
    parser.add_argument("--factor", type=float, default=10.0,
                        help="compiled may differ from eager at most this times the ulp copy")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-cache", action="store_true",
                        help="use inductor's usual cache instead of a fresh folder")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny model and sizes, 3 steps (a test of this script)")
    return parser.parse_args(argv)


def cases(args: argparse.Namespace) -> list[Case]:
    """The cases `--models` names, at the sizes the options give."""
    lo, hi = (int(v) for v in args.published_frames.split("-"))
    table = {
        "demo": Case("demo", REPO / "config" / "demo.yaml", 32, 48, 4, (30, 70), args.steps or 100),
        "published": Case("published", REPO / "config" / "phoenix2014.yaml", 1296,
                          args.published_size, 2, (lo, hi), args.steps or 24),
    }
    chosen = [table[name] for name in args.models.split(",")]
    if args.dry_run:
        for case in chosen:
            case.size, case.batch, case.frames, case.steps = 32, 2, (28, 40), args.steps or 3
            case.model_args = TINY_MODEL
    return chosen


def batches(case: Case, kernel_sizes: list[str], seed: int) -> list[tuple]:
    """`case.steps` collated batches: lengths uniform in `case.frames`, random frames in [-1, 1],
    one random gloss per `frames_per_gloss` frames; padded as training pads them."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(case.steps):
        items = []
        for i in range(case.batch):
            frames = int(torch.randint(case.frames[0], case.frames[1] + 1, (1,), generator=gen))
            video = torch.rand(frames, 3, case.size, case.size, generator=gen) * 2 - 1
            glosses = max(1, frames // case.frames_per_gloss)
            items.append((video, torch.randint(1, case.classes, (glosses,), generator=gen), i))
        video, video_len, label, label_len, _ = pad_collate(items, kernel_sizes)
        out.append((video, video_len, label, label_len))
    return out


def build(case: Case) -> tuple[SLRModel, dict]:
    """The case's model (train mode) and its resolved config."""
    cfg = load_yaml(case.config)
    model_args = {**cfg["model_args"], **case.model_args}
    model = SLRModel(case.classes, **model_args, loss_weights=dict(cfg["loss_weights"]))
    return model.train(), cfg


def timed_loss(step: Callable[[tuple], torch.Tensor], batch: tuple) -> tuple[float, float]:
    """(wall seconds, loss) of one training step on the CPU."""
    out = []
    seconds = timed(lambda: out.append(float(step(batch))), torch.device("cpu"))[0]
    return seconds, out[0]


def graph_counts() -> tuple[int, int]:
    """(Dynamo graphs, inductor graphs compiled or loaded from its cache) so far in this process."""
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    return (counters["stats"]["unique_graphs"],
            inductor["fxgraph_cache_miss"] + inductor["fxgraph_cache_bypass"]
            + inductor["fxgraph_cache_hit"])


def run_loop(case: Case, mode: str, seed: int) -> tuple[list[StepRecord], dict[str, float]]:
    """Train the eager and the compiled copy side by side; the steps and the parameter difference."""
    torch._dynamo.reset()  # the other case's graphs would count against the same code's cache limit
    torch.manual_seed(seed)
    eager, cfg = build(case)
    initial = copy.deepcopy(eager.state_dict())
    twin, ulp = copy.deepcopy(eager), one_ulp_away(eager, seed)
    runner = compile_for_training(twin, mode)
    optimizers = {"eager": build_optimizer(eager, cfg["optimizer_args"]),
                  "compiled": build_optimizer(twin, cfg["optimizer_args"]),
                  "ulp": build_optimizer(ulp, cfg["optimizer_args"])}
    steppers = {"eager": lambda b: train_step(eager, optimizers["eager"], b, None),
                "compiled": lambda b: train_step(twin, optimizers["compiled"], b, None, runner),
                "ulp": lambda b: train_step(ulp, optimizers["ulp"], b, None)}
    records = []
    for step, batch in enumerate(batches(case, eager.kernel_sizes, seed)):
        losses, seconds = {}, {}
        before = graph_counts()
        # Alternate which copy runs first, so that neither always finds warm caches.
        for name in ("eager", "compiled") if step % 2 == 0 else ("compiled", "eager"):
            torch.manual_seed(seed + 1 + step)  # the same dropout masks for both copies
            seconds[name], losses[name] = timed_loss(steppers[name], batch)
        after = graph_counts()
        torch.manual_seed(seed + 1 + step)
        losses["ulp"] = timed_loss(steppers["ulp"], batch)[1]  # the yardstick, untimed
        lengths = [int(v) for v in batch[1]]
        records.append(StepRecord(lengths, int(batch[0].shape[1]), seconds["eager"],
                                  seconds["compiled"], losses["eager"], losses["compiled"],
                                  losses["ulp"], after[0] - before[0], after[1] - before[1]))
        r = records[-1]
        print(f"  step {step:3d}: T={r.padded:3d} eager {r.eager_s:7.3f} s, compiled "
              f"{r.compiled_s:7.3f} s; loss {r.eager_loss:.6f} / {r.compiled_loss:.6f}"
              + (f"; new graphs: {r.dynamo_graphs} Dynamo, {r.inductor_graphs} inductor"
                 if r.dynamo_graphs or r.inductor_graphs else ""), flush=True)
    return records, {"compiled": param_difference(eager.state_dict(), twin.state_dict(), initial),
                     "ulp": param_difference(eager.state_dict(), ulp.state_dict(), initial)}


def one_ulp_away(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of `model` whose floating-point parameters and buffers are each one ulp away
    (up or down at random): the smallest perturbation float32 can represent."""
    twin = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in twin.state_dict().values():
            if tensor.is_floating_point():
                up = torch.rand(tensor.shape, generator=gen) < 0.5
                tensor.copy_(torch.nextafter(tensor, torch.where(up, torch.inf, -torch.inf)))
    return twin


def param_difference(eager: dict[str, torch.Tensor], compiled: dict[str, torch.Tensor],
                     initial: dict[str, torch.Tensor]) -> dict[str, float]:
    """Largest |eager - compiled| over the floating-point tensors, and the norm of the difference
    relative to the norm of the eager training update (eager - initial)."""
    names = [n for n, t in eager.items() if t.is_floating_point()]
    diff = torch.cat([(eager[n] - compiled[n]).flatten().double() for n in names])
    moved = torch.cat([(eager[n] - initial[n]).flatten().double() for n in names])
    return {"max_abs": float(diff.abs().max()),
            "relative_to_update": float(diff.norm() / moved.norm()) if moved.norm() > 0 else 0.0}


def summarize(records: list[StepRecord], warmup: int) -> dict[str, float]:
    """Compile time, loop times, per-step ratio, graphs and loss differences of one loop.

    A step compiled if it made a Dynamo or inductor graph (the first step always counts); its
    compile time is its compiled time less the median compiled step of the steps after warm-up
    that compiled nothing (the "steady" steps, which give the per-step ratio)."""
    compiling = [i for i, r in enumerate(records) if i == 0 or r.dynamo_graphs or r.inductor_graphs]
    steady = [r for i, r in enumerate(records) if i >= warmup and i not in compiling]
    if not steady:
        raise ValueError(f"no step after the {warmup} warm-up steps compiled nothing: "
                         "run more steps")
    compiled_step = statistics.median(r.compiled_s for r in steady)
    eager_step = statistics.median(r.eager_s for r in steady)
    compile_s = sum(records[i].compiled_s - compiled_step for i in compiling)
    saving = statistics.median(r.eager_s - r.compiled_s for r in steady)
    rel = [abs(r.eager_loss - r.compiled_loss) / abs(r.eager_loss) for r in records]
    rel_ulp = [abs(r.eager_loss - r.ulp_loss) / abs(r.eager_loss) for r in records]
    return {
        "steps": len(records), "steady_steps": len(steady),
        "compile_s": compile_s, "eager_step_s": eager_step, "compiled_step_s": compiled_step,
        "ratio": statistics.median(r.eager_s / r.compiled_s for r in steady),
        "eager_total_s": sum(r.eager_s for r in records),
        "compiled_total_s": sum(r.compiled_s for r in records),
        "compiled_total_without_compile_s": sum(r.compiled_s for r in records) - compile_s,
        "saving_per_step_s": saving,
        "break_even_steps": compile_s / saving if saving > 0 else float("inf"),
        "dynamo_graphs_first": records[0].dynamo_graphs,
        "inductor_graphs_first": records[0].inductor_graphs,
        "dynamo_graphs_later": sum(r.dynamo_graphs for r in records[1:]),
        "inductor_graphs_later": sum(r.inductor_graphs for r in records[1:]),
        "lengths": len({r.padded for r in records}),
        "max_rel_loss_diff": max(rel), "first_rel_loss_diff": rel[0],
        "max_rel_loss_diff_ulp": max(rel_ulp),
        "max_abs_loss_diff": max(abs(r.eager_loss - r.compiled_loss) for r in records),
    }


def report(case: Case, records: list[StepRecord], params: dict[str, dict[str, float]],
           warmup: int, first_rtol: float, factor: float) -> bool:
    """Print one case's figures; True if the compiled loop equals eager (module docstring)."""
    s = summarize(records, warmup)
    later = [(i, r.padded, r.dynamo_graphs, r.inductor_graphs) for i, r in enumerate(records)
             if i and (r.dynamo_graphs or r.inductor_graphs)]
    ulp, comp = params["ulp"], params["compiled"]
    checks = {f"first step within {first_rtol:g}": s["first_rel_loss_diff"] <= first_rtol,
              f"loop's loss within {factor:g}x the ulp copy's":
                  s["max_rel_loss_diff"] <= factor * s["max_rel_loss_diff_ulp"],
              f"parameters within {factor:g}x the ulp copy's":
                  comp["relative_to_update"] <= factor * ulp["relative_to_update"]}
    print(f"{case.name}: {s['steps']} steps over {s['lengths']} padded lengths "
          f"({min(r.padded for r in records)}-{max(r.padded for r in records)} frames)")
    print(f"  compile time {s['compile_s']:.1f} s (graphs at the first step: "
          f"{s['dynamo_graphs_first']} Dynamo, {s['inductor_graphs_first']} inductor; later: "
          f"{s['dynamo_graphs_later']} Dynamo, {s['inductor_graphs_later']} inductor"
          + (f", at (step, T, Dynamo, inductor) {later}" if later else "") + ")")
    print(f"  loop: eager {s['eager_total_s']:.1f} s; compiled {s['compiled_total_s']:.1f} s with "
          f"compile time, {s['compiled_total_without_compile_s']:.1f} s without")
    print(f"  step after warm-up ({s['steady_steps']} pairs): eager {s['eager_step_s']:.3f} s, "
          f"compiled {s['compiled_step_s']:.3f} s, eager / compiled per-pair median "
          f"{s['ratio']:.2f}x; saving {s['saving_per_step_s']:.3f} s a step")
    if s["saving_per_step_s"] > 0:
        print(f"  compiling pays back after {s['break_even_steps']:.0f} steps (a PHOENIX-2014 "
              f"epoch at batch 2: {PHOENIX_EPOCH_STEPS} steps; make demo: {DEMO_RUN_STEPS} steps)")
    else:
        print("  compiling never pays back at this size: the compiled step is not faster")
    print(f"  loss: |eager - compiled| at most {s['max_abs_loss_diff']:.3g} "
          f"({s['max_rel_loss_diff']:.3g} of the loss; first step {s['first_rel_loss_diff']:.3g}); "
          f"eager one ulp away: at most {s['max_rel_loss_diff_ulp']:.3g} of the loss")
    print(f"  parameters after the loop, |difference| / eager update (norms): compiled "
          f"{comp['relative_to_update']:.3g} (largest element {comp['max_abs']:.3g}), eager one "
          f"ulp away {ulp['relative_to_update']:.3g} (largest element {ulp['max_abs']:.3g})")
    print("  compiled equals eager: " + ", ".join(f"{name}: {'yes' if ok else 'NO'}"
                                                 for name, ok in checks.items()))
    return all(checks.values())


def main(argv: list[str] | None = None) -> int:
    """Run each case's loop, eager and compiled side by side, and print the figures."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    check_compile_mode(args.compile, device)
    from torch._inductor import config as inductor_config

    if args.threads == 1:
        inductor_config.compile_threads = 1  # kernels compiled in this process, one at a time
    torch._logging.set_logs(recompiles=True)  # why a graph compiled again, on stderr
    with tempfile.TemporaryDirectory() as cache:
        if not args.keep_cache:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), compile mode "
              f"{args.compile}, backend {os.environ.get(BACKEND_ENV) or 'inductor'}, inductor "
              f"cache {'usual' if args.keep_cache else 'fresh'}, seed {args.seed}", flush=True)
        ok = True
        for case in cases(args):
            print(f"{case.name}: {case.config.name} model_args + {case.model_args or 'nothing'}, "
                  f"{case.classes} classes, {case.size} px, batch {case.batch}, "
                  f"{case.frames[0]}-{case.frames[1]} frames, {case.steps} steps", flush=True)
            start = time.perf_counter()
            records, params = run_loop(case, args.compile, args.seed)
            ok &= report(case, records, params, args.warmup, args.first_rtol, args.factor)
            print(f"  ({case.name} took {time.perf_counter() - start:.0f} s)", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
