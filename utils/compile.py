"""torch.compile for training (`compile:` / `--compile [MODE]`): checks, wrapping and dynamic lengths.

Only the training forward is compiled; evaluation and checkpoints use the bare module, so
state-dict keys never gain the `_orig_mod.` prefix. The video's time dimension is marked
dynamic, so that videos of new lengths reuse the captured graph (SLRModel has no shape-dependent
Python branch on the time length: tests/test_compile.py counts the compilations).

What pinned the length with inductor (torch 2.13, found with TORCH_LOGS=dynamic and
TORCHDYNAMO_EXTENDED_DEBUG_GUARD_ADDED on the demo model): inductor's layout optimisation gave
saved activations (the temporal (k, 1) convs' outputs on (B, C, T, 1) clips) other strides than
the traced graph's; AOT autograd then compiles the backward with those strides evaluated to
numbers (_aot_stage2b_bw_compile), and guards such as Eq(2560, 64*T) follow, which fix T.
`keep_traced_layouts` turns the optimisation off (measured on the demo model: 40 then 44 frames,
no new graph, the 44-frame step 0.1 s after a 124 s compile, same loss; the tiny test model:
at most one more graph over 6 lengths, tests/test_compile.py, opt-in). A few graphs remain by
design: inductor's C++ code generator sums float32 reductions of more than 4,096 elements in
chunks (cascade summation, for accuracy) and guards the length range that decision holds for
(need_use_acc_helper); the published model compiled one graph for padded lengths up to 128 and
one for 129-256 (bench/compile_loop.py; above 256, as PHOENIX's longest videos, presumably one
more: not measured). Padding batches to buckets (feeder_args.pad_to_multiple) still bounds CUDA
graphs (reduce-overhead), which are recorded per shape.
"""
from __future__ import annotations

import os
import shutil

import torch
from torch import Tensor, nn

from utils.errors import UserError

COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
# Debugging: run the captured graphs with another torch.compile backend ('aot_eager': AOT
# autograd's graphs without inductor; 'eager': Dynamo's graphs as traced), to tell an inductor
# problem from a capture one. The mode then has no effect.
BACKEND_ENV = "STFNET_COMPILE_BACKEND"


class CompileError(UserError):
    """torch.compile cannot run here (the message says what to install or change)."""


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU ($CXX or g++), if it is installed."""
    from torch._inductor import config

    for name in config.cpp.cxx:
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def check_compile_mode(mode: str, device: torch.device) -> None:
    """Fail early, with what to do, when `mode` cannot compile on `device`."""
    if mode not in COMPILE_MODES:
        raise CompileError(f"compile mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")
    if mode != "none" and _backend() == "inductor" and device.type == "cpu" and cxx_compiler() is None:
        from torch._inductor import config

        names = " or ".join(repr(n) for n in config.cpp.cxx if n)
        raise CompileError(f"compile: {mode} needs a C++ compiler for inductor's CPU kernels and "
                           f"none was found ({names} on PATH): install g++ (Debian/Ubuntu: "
                           f"apt-get install g++), set $CXX to one, or train with compile: none")


def _backend() -> str:
    """inductor, unless $STFNET_COMPILE_BACKEND names another backend."""
    return os.environ.get(BACKEND_ENV) or "inductor"


def aten_convolution_backward() -> None:
    """Have inductor call ATen's convolution backward instead of lowering it.

    torch 2.13's lowering (torch/_inductor/kernel/conv.py) turns every stride of the input
    gradient into a constant (`guard_int_seq(layout_dx.stride)`). The strides of the temporal
    Conv1d layers (B, C, T) and of the (k, 1) temporal convs on (B, C, T, H*W) clips hold the
    time length, so each new video length failed a guard and compiled again (measured: 4 new
    lengths, 4 compiles of minutes each). The ATen kernel, which inductor called before 2.13,
    takes symbolic strides; it is the same kernel eager training runs.
    """
    from torch._inductor.lowering import make_fallback

    make_fallback(torch.ops.aten.convolution_backward.default, override_decomp=True)


def keep_traced_layouts() -> None:
    """Have inductor keep the traced graph's memory layouts (no layout optimisation).

    Otherwise a saved activation can get other strides in the compiled forward than in the
    traced graph, and AOT autograd compiles the backward with them as constants: every new
    video length then failed a guard and compiled again (module docstring).
    """
    from torch._inductor import config

    config.layout_optimization = False


def compile_for_training(module: nn.Module, mode: str) -> nn.Module:
    """`module` compiled with inductor in `mode` ('default', 'reduce-overhead', 'max-autotune').

    The result shares `module`'s parameters and buffers; save and load `module` itself.
    """
    backend = _backend()
    if backend != "inductor":
        return torch.compile(module, backend=backend)
    aten_convolution_backward()
    keep_traced_layouts()
    return torch.compile(module, mode=None if mode == "default" else mode)


def mark_time_dynamic(x: Tensor) -> Tensor:
    """Mark the time dimension of a video (B, T, 3, H, W) or feature (B, C, T) batch dynamic."""
    torch._dynamo.maybe_mark_dynamic(x, 1 if x.dim() == 5 else x.dim() - 1)
    return x
