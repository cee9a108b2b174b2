"""torch.compile for training (`compile:` / `--compile [MODE]`): checks, wrapping and dynamic lengths.

Only the training forward is compiled; evaluation and checkpoints use the bare module, so
state-dict keys never gain the `_orig_mod.` prefix. The video's time dimension is marked
dynamic, so that videos of new lengths reuse the captured graph (SLRModel has no shape-dependent
Python branch on the time length: tests/test_compile.py counts the compilations).

What still pins the length with inductor (torch 2.13, found with TORCH_LOGS=dynamic and
TORCHDYNAMO_EXTENDED_DEBUG_GUARD_ADDED on the demo model): AOT autograd compiles the backward
with the compiled forward's strides of the saved activations evaluated to numbers
(torch/_inductor/utils.py set_tracing_context_output_strides, then _aot_stage2b_bw_compile
restrides every saved tensor whose symbolic stride it cannot prove equal); the backward graph
then mixes constant strides (e.g. 2560 = 64 x 40 frames) with symbolic sizes, and fake-tensor
checks such as check_contiguous_sizes_strides add guards like Eq(2560, 64*T), which fix T.
Falling back to ATen for max-pooling (inductor's low-memory max-pool prims) or turning off the
fake-tensor cache does not remove them (measured: still T = 40). So on varied lengths pad the
training batches to buckets (feeder_args.pad_to_multiple): one graph per bucket.
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


def compile_for_training(module: nn.Module, mode: str) -> nn.Module:
    """`module` compiled with inductor in `mode` ('default', 'reduce-overhead', 'max-autotune').

    The result shares `module`'s parameters and buffers; save and load `module` itself.
    """
    backend = _backend()
    if backend != "inductor":
        return torch.compile(module, backend=backend)
    aten_convolution_backward()
    return torch.compile(module, mode=None if mode == "default" else mode)


def mark_time_dynamic(x: Tensor) -> Tensor:
    """Mark the time dimension of a video (B, T, 3, H, W) or feature (B, C, T) batch dynamic."""
    torch._dynamo.maybe_mark_dynamic(x, 1 if x.dim() == 5 else x.dim() - 1)
    return x
