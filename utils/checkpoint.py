"""Checkpoint files: atomic writes and tolerant reads of this project's and the published format."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from utils.atomic import atomic_path

# Prefixes added by wrappers: DataParallel/DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """Write `payload` to `path` atomically: a kill at any moment leaves the old file intact."""
    path = Path(path)
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


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint file, with an error that names the file when it is missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (pass the path of a .pt file written by "
                                f"main.py or a published STF-Net checkpoint)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several unrelated types for damaged files
        raise RuntimeError(f"cannot read checkpoint {path}: {exc}. The file is truncated or not a "
                           f"PyTorch checkpoint; use the previous checkpoint of the run.") from exc
    if not isinstance(ckpt, dict):
        raise RuntimeError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict "
                           f"(with 'model_state_dict') or a state dict")
    return ckpt


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
        raise RuntimeError("checkpoint has no 'model_state_dict' and is not a state dict itself")
    return strip_wrapper_prefixes(state)


def shape_mismatches(expected: Mapping[str, Any], state: Mapping[str, Any]) -> list[str]:
    """`key: checkpoint (shape) vs model (shape)` for every key both hold with different shapes."""
    return [f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected[key].shape)}"
            for key, value in state.items()
            if key in expected and tuple(value.shape) != tuple(expected[key].shape)]
