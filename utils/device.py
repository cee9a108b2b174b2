"""Device selection (`--device cpu | 0 | 0,1`), batch transfer and mixed-precision contexts."""
from __future__ import annotations

import contextlib
import os
from typing import Any, ContextManager

import torch

from utils.errors import ConfigError


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as PyTorch's DataLoader counts them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parse_device_list(spec: str | int | None) -> list[int] | None:
    """'cpu' -> None; 'auto' -> [0] when CUDA exists else None; '0,1' -> [0, 1]."""
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        return [0] if torch.cuda.is_available() else None
    if text in ("cpu", "", "-1"):
        return None
    text = text.removeprefix("cuda:").removeprefix("cuda")
    try:
        ids = [int(part) for part in text.split(",") if part.strip() != ""]
    except ValueError:
        raise ConfigError(f"--device {spec!r}: expected 'cpu', 'auto', a GPU index like '0', "
                          f"or a list like '0,1'") from None
    if not ids or any(i < 0 for i in ids):
        raise ConfigError(f"--device {spec!r}: GPU indexes must be >= 0")
    return ids


def select_device(spec: str | int | None, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """The torch.device this process computes on; under torchrun, the local rank picks the GPU."""
    ids = parse_device_list(spec)
    if ids is None:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: CUDA is not available on this machine; "
                          f"use --device cpu")
    if world_size == 1 and len(ids) > 1:
        raise ConfigError(f"--device {spec} lists {len(ids)} GPUs but this is a single process: "
                          f"launch one process per GPU with "
                          f"`torchrun --nproc_per_node {len(ids)} main.py ... --device {spec}`")
    if world_size > 1 and len(ids) == 1:
        index = local_rank  # torchrun with a single `--device 0`: one GPU per local rank
    elif local_rank >= len(ids):
        raise ConfigError(f"--device {spec}: local rank {local_rank} has no GPU in the list; "
                          f"give as many GPUs as --nproc_per_node")
    else:
        index = ids[local_rank]
    if index >= torch.cuda.device_count():
        raise ConfigError(f"--device {spec}: GPU {index} does not exist "
                          f"({torch.cuda.device_count()} visible)")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def quiet_opencv_threads() -> None:
    """Stop OpenCV's own thread pool: once woken by a frame read, it competes with torch's
    OpenMP threads and made CPU training steps ~30x slower on a 2-core machine."""
    try:
        import cv2
    except ImportError:
        return
    cv2.setNumThreads(0)


def worker_init(worker_id: int) -> None:
    """DataLoader worker start-up: the same OpenCV threading rule in every worker process."""
    quiet_opencv_threads()


def to_device(data: Any, device: torch.device, non_blocking: bool = True) -> Any:
    """Move tensors (also inside lists/tuples/dicts) to `device`; other objects pass through."""
    if isinstance(data, torch.Tensor):
        return data.to(device, non_blocking=non_blocking and device.type == "cuda")
    if isinstance(data, (list, tuple)):
        return type(data)(to_device(d, device, non_blocking) for d in data)
    if isinstance(data, dict):
        return {k: to_device(v, device, non_blocking) for k, v in data.items()}
    return data


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` ('none' | 'fp16' | 'bf16') on `device`, checked for support."""
    if amp in (None, "none"):
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("amp 'fp16' needs a CUDA device; on CPU use amp: bf16 (or none)")
        return torch.float16
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("amp 'bf16' is not supported by this GPU; use amp: fp16")
        return torch.bfloat16
    raise ConfigError(f"amp {amp!r}: expected none, fp16 or bf16")


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """torch.autocast for `dtype`, or a no-op when mixed precision is off."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A grad scaler that is active only for fp16 (bf16 has fp32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
