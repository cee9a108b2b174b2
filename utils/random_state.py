"""Random number generator states: seeding, capture/restore for exact resume, per-sample seeding."""
from __future__ import annotations

import hashlib
import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA); optionally ask for deterministic kernels."""
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def capture_rng_state() -> dict[str, Any]:
    """The global generators' states, in the checkpoint's `rng_state` layout (tensors and plain types).

    Plain types keep the checkpoint loadable with torch.load(weights_only=True).
    """
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (str(name), torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss),
                  float(gauss)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back states from `capture_rng_state` (also the original's 'random' key name)."""
    python_state = state.get("python", state.get("random"))
    if python_state is not None:
        random.setstate(_as_python_state(python_state))
    if state.get("numpy") is not None:
        np.random.set_state(_as_numpy_state(state["numpy"]))
    if state.get("torch") is not None:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    cuda = state.get("cuda") or []
    # A run resumed on a machine with a different GPU count keeps fresh CUDA states on purpose.
    if torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in cuda])


def _as_python_state(state: Any) -> tuple:
    """random.setstate needs tuples; a YAML/pickle round trip can turn them into lists."""
    version, internal, gauss = state
    return version, tuple(internal), gauss


def _as_numpy_state(state: Any) -> tuple:
    """np.random.set_state's tuple from ours (key as a tensor) or the original's (key as an ndarray)."""
    name, key, pos, has_gauss, gauss = state
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    return str(name), key.astype(np.uint32), int(pos), int(has_gauss), float(gauss)


def sample_seed(base_seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed that depends only on (run seed, epoch, dataset index)."""
    digest = hashlib.blake2b(f"{base_seed}/{epoch}/{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


class SeededDataset(torch.utils.data.Dataset):
    """Wraps a dataset so each item's augmentation is seeded by (seed, epoch, index).

    Why: augmentation then does not depend on worker count, worker assignment or how many
    batches were skipped, which is what makes a resumed (even mid-epoch) run exact. The
    caller's global RNG states are put back afterwards, so model randomness is untouched.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation stream items are drawn from."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        # Expose the wrapped feeder's attributes (collate_fn, inputs_list, ...).
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        seed = sample_seed(self.seed, self.epoch, int(index))
        saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        try:
            random.seed(seed)
            np.random.seed(seed)
            torch.default_generator.manual_seed(seed)  # CPU only: CUDA streams stay untouched
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])
