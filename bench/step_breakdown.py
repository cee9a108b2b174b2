"""Where a training step's time goes: forward and backward of each part, and the FLOP rate.

Used by `bench/model_step.py --breakdown`. Each part runs alone on the inputs it gets in the real
step (captured once, detached, requiring grad like the real activations), forward then backward
of the sum of its outputs; the profiler splits its CPU time into convolutions, BatchNorm/ReLU and
the rest. The step's FLOPs are counted by torch.utils.flop_counter (convolutions, matmuls, LSTM)
and divided by the measured step time; the CPU's peak is its FMA throughput (assumed 2 x 256-bit
FMA units per core = 32 fp32 FLOP per cycle for an AVX2 CPU) at the clock /proc/cpuinfo reports.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from modules.criterions import total_loss


def _sum_outputs(out) -> Tensor:
    """A scalar depending on every float tensor of `out` (for a backward pass through a part)."""
    if isinstance(out, Tensor):
        return out.float().sum() if out.is_floating_point() else out.new_zeros((), dtype=torch.float32)
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return sum((_sum_outputs(o) for o in out), torch.zeros(()))
    return torch.zeros(())


def _leaf(t: Tensor) -> Tensor:
    """A detached copy of an activation that requires grad (as it does inside the step)."""
    return t.detach().clone().requires_grad_(t.is_floating_point())


def part_calls(model: nn.Module, x: Tensor, len_x: Tensor, label: Tensor,
               label_lgt: Tensor) -> dict[str, Callable[[], object]]:
    """Each part as a call on its captured inputs (SLRModel's structure)."""
    batch = x.shape[0]
    captured: dict[str, tuple] = {}
    hooks = [getattr(model.conv2d, f"shift{i}").register_forward_pre_hook(
        lambda m, args, i=i: captured.__setitem__(f"shift{i}", args)) for i in (1, 2, 3)]
    with torch.no_grad():
        framewise, stages = model.conv2d(x)
        conv = model.conv1d(framewise, len_x)
        lstm = model.temporal_model(conv["visual_feat"], conv["feat_len"])
        ret = model(x, len_x)
    for hook in hooks:
        hook.remove()
    fusions = [model.conv2d.shift1, model.conv2d.shift2, model.conv2d.shift3]
    shift_in = [(_leaf(captured[f"shift{i}"][0]), captured[f"shift{i}"][1]) for i in (1, 2, 3)]
    stage_leaves = [_leaf(s) for s in stages]
    frame_leaf, visual_leaf, lstm_leaf = _leaf(framewise), _leaf(conv["visual_feat"]), _leaf(lstm)
    logits = {k: _leaf(ret[k]) for k in ("conv_logits", "sequence_logits")}
    aux = [_leaf(a) for a in ret["aux_logits"]]

    def losses() -> Tensor:
        out = {**ret, **logits, "aux_logits": aux}
        return total_loss(model.loss_terms(out, label, label_lgt))

    return {
        "frame backbone (ResNet incl. fusion)": lambda: model.conv2d(_leaf(x)),
        "  of which fusion blocks": lambda: [f(*a) for f, a in zip(fusions, shift_in)],
        "hierarchical branch": lambda: model.csa(stage_leaves, batch),
        "temporal stack (conv1d, lift pool)": lambda: model.conv1d(frame_leaf, len_x),
        "BiLSTM": lambda: model.temporal_model(visual_leaf, conv["feat_len"]),
        "classifier": lambda: model.classifier(lstm_leaf),
        "losses (5 CTC, distillation)": losses,
    }


def _category(name: str) -> str:
    """Profiler op name -> convolution / batchnorm+relu / other."""
    if "conv" in name:
        return "conv"
    if any(k in name for k in ("batch_norm", "relu", "threshold", "_AccurateBatchNorm")):
        return "bn_relu"
    return "other"


def time_part(call: Callable[[], object], repeats: int) -> tuple[float, float, dict[str, float]]:
    """Median forward and backward seconds, and profiler self-CPU seconds by op category."""
    fwd, bwd = [], []
    for _ in range(repeats + 1):  # first: warm-up
        start = time.perf_counter()
        out = call()
        mid = time.perf_counter()
        _sum_outputs(out).backward()
        fwd.append(mid - start)
        bwd.append(time.perf_counter() - mid)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _sum_outputs(call()).backward()
    shares = {"conv": 0.0, "bn_relu": 0.0, "other": 0.0}
    for event in prof.key_averages():
        shares[_category(event.key.lower())] += event.self_cpu_time_total / 1e6
    return statistics.median(fwd[1:]), statistics.median(bwd[1:]), shares


def peak_flops(threads: int) -> tuple[float, str]:
    """Assumed fp32 peak FLOP/s of `threads` cores of this CPU, and how it was derived."""
    mhz = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":")[1])
                break
    except OSError:
        pass
    if not mhz:
        return float("nan"), "clock unknown"
    flags = Path("/proc/cpuinfo").read_text()
    per_cycle = 64 if " avx512f " in flags else 32
    return (threads * mhz * 1e6 * per_cycle,
            f"{threads} core(s) x {mhz / 1000:.2f} GHz x {per_cycle} fp32 FLOP/cycle (FMA)")


def step_flops(step: Callable[[], None]) -> int:
    """FLOPs of one training step (forward + backward), as torch's flop counter counts them."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def report_breakdown(model: nn.Module, batch: tuple, step: Callable[[], None], step_seconds: float,
                     optimizer: torch.optim.Optimizer, repeats: int = 2) -> None:
    """Print the per-part table, the optimizer's time and the step's achieved FLOP rate."""
    x, len_x, label, label_lgt = batch
    print("where the step's time goes (ours, fp32; each part alone, median of "
          f"{repeats}; conv / BN+ReLU / other = profiler self-CPU shares of forward+backward):")
    total = 0.0
    for name, call in part_calls(model, x, len_x, label, label_lgt).items():
        model.zero_grad(set_to_none=True)
        fwd, bwd, shares = time_part(call, repeats)
        if not name.startswith(" "):
            total += fwd + bwd
        cpu = sum(shares.values()) or 1.0
        print(f"  {name:38s} fwd {fwd * 1e3:8.1f} ms  bwd {bwd * 1e3:8.1f} ms   conv "
              f"{shares['conv'] / cpu:4.0%}  BN+ReLU {shares['bn_relu'] / cpu:4.0%}  other "
              f"{shares['other'] / cpu:4.0%}")
    for param in model.parameters():  # the step updates every parameter that has a gradient
        param.grad = torch.zeros_like(param) if param.requires_grad else None
    opt_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        optimizer.step()
        opt_times.append(time.perf_counter() - start)
    total += statistics.median(opt_times)
    print(f"  {'Adam step':38s}     {statistics.median(opt_times) * 1e3:8.1f} ms")
    print(f"  sum of the parts {total:.3f} s; the whole step measured {step_seconds:.3f} s")
    flops = step_flops(step)
    peak, how = peak_flops(torch.get_num_threads())
    achieved = flops / step_seconds
    print(f"  step: {flops / 1e9:.1f} GFLOP (forward + backward), {achieved / 1e9:.1f} GFLOP/s "
          f"achieved = {achieved / peak:.0%} of the assumed peak {peak / 1e9:.0f} GFLOP/s ({how})")
