"""Checkpoint files: atomic writes and safe reads of this project's, the original code's and the
published format.

Reading never runs code from the file: `torch.load(weights_only=True)` rebuilds tensors and plain
containers only (plus NumPy arrays of numbers, which the original code's RNG states hold). A file
that needs anything else is refused unless the caller passes `unsafe=True` (the tools' explicit
`--unsafe-load` option), because unpickling it could execute arbitrary code.
"""
from __future__ import annotations

import os
import pickletools
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from utils.atomic import atomic_path, link_or_copy_atomic
from utils.errors import MissingFileError, UserError

# Prefixes added by wrappers: DataParallel/DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

UNSAFE_OPTION = "--unsafe-load"

_NUMERIC_DTYPES = ("BoolDType", "Int8DType", "Int16DType", "Int32DType", "Int64DType", "UInt8DType",
                   "UInt16DType", "UInt32DType", "UInt64DType", "Float16DType", "Float32DType",
                   "Float64DType", "LongDType", "ULongDType", "LongLongDType", "ULongLongDType")


class CheckpointError(UserError):
    """A checkpoint or weights file that cannot be read (damaged, truncated, not a checkpoint)."""


class CheckpointMismatchError(UserError):
    """A checkpoint that does not fit the gloss dictionary or the architecture options."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose unpickling would call code outside the safe allowlist."""


def numpy_safe_globals() -> list:
    """NumPy arrays of numbers (the original code's `np.random.get_state()`), under both module names.

    Rebuilding an ndarray only copies bytes into a numeric array; object arrays stay refused
    because their dtype class is not in the list.
    """
    from numpy._core import multiarray

    found = [getattr(np.dtypes, name) for name in _NUMERIC_DTYPES if hasattr(np.dtypes, name)]
    return [multiarray._reconstruct, np.ndarray, np.dtype, *dict.fromkeys(found),
            (multiarray._reconstruct, "numpy.core.multiarray._reconstruct")]  # written by NumPy 1.x


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any],
                    previous: str | os.PathLike | None = None) -> None:
    """Write `payload` to `path` atomically: a kill at any moment leaves the old file intact.

    With `previous`, the file at `path` is first kept under that name; both names hold complete
    files at every moment, so a damaged new file still leaves the one before it.
    """
    path = Path(path)
    if previous is not None and path.is_file():
        link_or_copy_atomic(path, previous)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(dict(payload), handle)
        handle.flush()
        os.fsync(handle.fileno())  # the bytes are on disk before the rename makes them the checkpoint
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Flush the directory entry so the rename itself survives a power loss."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *, unsafe: bool = False) -> dict:
    """Read a checkpoint without running code from it (unless `unsafe`), with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path} (pass the path of a .pt file written by "
                               f"main.py or a published STF-Net checkpoint)")
    try:
        if unsafe:
            ckpt = torch.load(path, map_location=map_location, weights_only=False)
        else:
            with torch.serialization.safe_globals(numpy_safe_globals()):
                ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for damaged files
        found = None if unsafe else unsafe_globals(path)  # None: not a readable pickle
        if found is not None and (found or _is_weights_only_refusal(exc)):
            what = (f"would call {', '.join(sorted(found)[:5])}" if found
                    else f"needs objects that safe loading does not rebuild ({_first_line(exc)})")
            raise UnsafeCheckpointError(
                f"refused to load {path}: it is not plain weights; unpickling it {what}, and a "
                f"checkpoint can run arbitrary code on this machine that way. Safe loading "
                f"(torch.load weights_only=True) accepts tensors, plain containers and numeric NumPy "
                f"arrays only. If you trust the file's source, pass {UNSAFE_OPTION}") from None
        raise CheckpointError(f"cannot read checkpoint {path}: {_first_line(exc)}. The file is "
                              f"truncated, damaged or not a PyTorch checkpoint") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict "
                              f"(with 'model_state_dict') or a state dict")
    return ckpt


def unsafe_globals(path: str | os.PathLike) -> list[str] | None:
    """Functions/classes the file's pickles name that safe loading refuses; None if it holds no pickle."""
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            if zipfile.is_zipfile(path):
                return torch.serialization.get_unsafe_globals_in_checkpoint(path)
            from torch import _weights_only_unpickler

            allowed = set(_weights_only_unpickler._get_allowed_globals())
            allowed |= set(_weights_only_unpickler._get_user_allowed_globals())
        with open(path, "rb") as handle:  # the legacy (pre-1.6) format, or a bare pickle
            names = pickle_globals(handle)
        return None if names is None else sorted(names - allowed)
    except Exception:  # a damaged zip: the caller reports it as damaged
        return None


def pickle_globals(handle: Any) -> set[str] | None:
    """`module.name` of every GLOBAL / STACK_GLOBAL of the pickles in `handle` (read, never run).

    The legacy format is several pickles in a row followed by raw storage bytes: reading stops at
    the first thing that is not a pickle. None when not even the first one is.
    """
    names: set[str] = set()
    count = 0
    while True:
        strings: list[str] = []
        found: set[str] = set()
        try:
            for op, arg, _ in pickletools.genops(handle):
                if op.name == "GLOBAL":
                    found.add(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.add(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:
            return names if count else None
        names |= found
        count += 1


def _is_weights_only_refusal(exc: BaseException) -> bool:
    """True for torch's 'Weights only load failed' (the file parsed, but holds disallowed objects)."""
    return "Weights only load failed" in str(exc)


def _first_line(exc: BaseException) -> str:
    """The reason of an exception in one line, without torch's paragraphs about weights_only."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation",
                   "In PyTorch 2.6")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(boilerplate)]
    return (reasons or lines or [type(exc).__name__])[0]


def strip_wrapper_prefixes(state: Mapping[str, Any]) -> dict:
    """Drop the `module.` / `_orig_mod.` prefixes that DDP, DataParallel and torch.compile add."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    changed = True
            key = key.replace(".module.", ".").replace("._orig_mod.", ".")
        out[key] = value
    return out


def model_state_from_checkpoint(ckpt: Mapping[str, Any]) -> dict:
    """Return the model state dict of a checkpoint (ours, the published one, or a bare state dict)."""
    state = ckpt.get("model_state_dict", ckpt)
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise CheckpointError("checkpoint has no 'model_state_dict' and is not a state dict itself")
    return strip_wrapper_prefixes(state)


def shape_mismatches(expected: Mapping[str, Any], state: Mapping[str, Any]) -> list[str]:
    """`key: checkpoint (shape) vs model (shape)` for every key both hold with different shapes."""
    return [f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected[key].shape)}"
            for key, value in state.items()
            if key in expected and tuple(value.shape) != tuple(expected[key].shape)]
