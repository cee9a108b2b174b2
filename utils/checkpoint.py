"""Checkpoint files: atomic writes and safe reads of this project's, the original code's and the
published format.

Reading never runs code from the file: `torch.load(weights_only=True)` rebuilds tensors and plain
containers only (plus NumPy arrays of numbers, which the original code's RNG states hold). A file
that needs anything else is refused unless the caller passes `unsafe=True` (the tools' explicit
`--unsafe-load` option), because unpickling it could execute arbitrary code.

Every file this project writes carries a SHA-256 of its contents (`checksum`: the tensors' dtype,
shape and bytes and every other value, in a fixed order), which every read verifies: a damaged
file is refused by name. Published and older files have none and cannot be verified.
"""
from __future__ import annotations

import hashlib
import os
import pickletools
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from utils.atomic import atomic_path, copy_atomic, fsync_dir
from utils.errors import MissingFileError, UserError, is_out_of_space

# Prefixes added by wrappers: DataParallel/DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

UNSAFE_OPTION = "--unsafe-load"
CHECKSUM_KEY = "checksum"  # {"sha256": hex digest of the rest of the payload (payload_digest)}

_NUMERIC_DTYPES = ("BoolDType", "Int8DType", "Int16DType", "Int32DType", "Int64DType", "UInt8DType",
                   "UInt16DType", "UInt32DType", "UInt64DType", "Float16DType", "Float32DType",
                   "Float64DType", "LongDType", "ULongDType", "LongLongDType", "ULongLongDType")


class CheckpointError(UserError):
    """A checkpoint or weights file that cannot be read (damaged, truncated, not a checkpoint)."""


class CheckpointMismatchError(UserError):
    """A checkpoint that does not fit the gloss dictionary or the architecture options."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose unpickling would call code outside the safe allowlist."""


class CheckpointSpaceError(CheckpointError):
    """No room on the disk for a checkpoint (the file it would replace is left as it was)."""


def numpy_safe_globals() -> list:
    """NumPy arrays of numbers (the original code's `np.random.get_state()`), under both module names.

    Rebuilding an ndarray only copies bytes into a numeric array; object arrays stay refused
    because their dtype class is not in the list.
    """
    from numpy._core import multiarray

    found = [getattr(np.dtypes, name) for name in _NUMERIC_DTYPES if hasattr(np.dtypes, name)]
    return [multiarray._reconstruct, np.ndarray, np.dtype, *dict.fromkeys(found),
            (multiarray._reconstruct, "numpy.core.multiarray._reconstruct")]  # written by NumPy 1.x


def payload_digest(payload: Mapping[str, Any]) -> tuple[str, int]:
    """(SHA-256 hex digest of `payload` without its checksum, bytes of its tensors and arrays)."""
    digest = hashlib.sha256()
    nbytes = _hash_value({k: v for k, v in payload.items() if k != CHECKSUM_KEY}, digest)
    return digest.hexdigest(), nbytes


def _hash_value(value: Any, digest: Any) -> int:
    """Feed `value` to `digest` in a fixed order (type tags, shapes, raw bytes); returns array bytes."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        raw = flat.view(torch.uint8) if flat.numel() else flat
        digest.update(raw.numpy().tobytes() if flat.numel() else b"")
        return flat.numel() * flat.element_size()
    if isinstance(value, np.ndarray):
        digest.update(f"N{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
        return int(value.nbytes)
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda item: (type(item[0]).__name__, repr(item[0])))
        digest.update(f"D{len(items)}".encode())
        return sum(_hash_value(k, digest) + _hash_value(v, digest) for k, v in items)
    if isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__[0]}{len(value)}".encode())
        return sum(_hash_value(item, digest) for item in value)
    digest.update(f"{type(value).__name__}:{value!r};".encode())
    return 0


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any],
                    previous: str | os.PathLike | None = None) -> None:
    """Write `payload` and its checksum to `path` atomically: a kill at any moment leaves the old
    file intact (or, with `previous`, the old file under that name and the new one complete).

    With `previous`, the file at `path` moves to that name once the new one is on disk, so a
    damaged new file still leaves the one before it.
    """
    digest, nbytes = payload_digest(payload)
    content = {**payload, CHECKSUM_KEY: {"sha256": digest}}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(content, handle)
            handle.flush()
            os.fsync(handle.fileno())  # the bytes are on disk before the rename makes them the checkpoint

    _replace(Path(path), write, nbytes, previous)


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Make `dst` a separate copy of the checkpoint `src` (not a hard link), atomically."""
    src, dst = Path(src), Path(dst)
    try:
        copy_atomic(src, dst)
    except Exception as exc:
        if is_out_of_space(exc):
            raise _space_error(dst, src.stat().st_size, None) from None
        raise


def _replace(path: Path, write: Callable[[Path], None], nbytes: int,
             previous: str | os.PathLike | None) -> None:
    """Write a temporary sibling with `write`, then (previous <- path and) path <- temporary."""
    with atomic_path(path) as tmp:
        try:
            write(tmp)
        except Exception as exc:
            if is_out_of_space(exc):
                raise _space_error(path, nbytes, previous) from None
            raise
        if previous is not None and path.is_file():
            os.replace(path, previous)  # the old file keeps its bytes under the new name
    fsync_dir(path.parent)


def _space_error(path: Path, nbytes: int, previous: str | os.PathLike | None) -> CheckpointSpaceError:
    """The one-line message of a save that ran out of disk space."""
    free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
    kept = (f"{path} is unchanged" if path.exists() else f"no {path.name} was written")
    return CheckpointSpaceError(
        f"no space left in {path.parent} to write {path.name}: it needs about {nbytes:,} bytes, "
        f"{free:,} are free; {kept}. Free some space (or pass another --work-dir) and rerun "
        f"into the same work dir to resume")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *, unsafe: bool = False,
                    log: Callable[[str], None] | None = None) -> dict:
    """Read a checkpoint without running code from it (unless `unsafe`) and verify its checksum,
    with errors naming the file; `log` hears when a file has no checksum to verify."""
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
    return verify_checksum(ckpt, path, log)


def verify_checksum(ckpt: dict, path: Path, log: Callable[[str], None] | None = None) -> dict:
    """`ckpt` without its checksum, which must match its contents; a file without one passes
    (published and older checkpoints), with a note to `log`."""
    saved = ckpt.pop(CHECKSUM_KEY, None)
    if saved is None:
        if log is not None:
            log(f"note: {path} carries no checksum (a published or older checkpoint): its "
                f"contents cannot be verified")
        return ckpt
    expected = saved.get("sha256") if isinstance(saved, Mapping) else None
    try:
        actual = payload_digest(ckpt)[0]
    except Exception as exc:  # a damaged value that cannot even be hashed
        actual = f"unhashable ({_first_line(exc)})"
    if actual != expected:
        raise CheckpointError(f"checkpoint {path} is damaged: its contents do not match the SHA-256 "
                              f"saved in it (changed bytes on disk or in a copy); use another copy "
                              f"(last_previous.pt, epochNNN_model.pt)")
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
