"""The vocabulary file written by preprocessing: gloss_dict.npy (gloss -> [index from 1, count])."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def load_gloss_dict(path: str | os.PathLike, hint: str = "pass the gloss_dict.npy that preprocess/ "
                    "wrote") -> dict:
    """Read gloss_dict.npy with errors that name the file; `hint` says how the caller chose it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gloss dictionary not found: {path}; {hint} (run the preprocessing "
                                f"first, e.g. `python preprocess/dataset_preprocess.py --dataset-root ...`)")
    try:
        value = np.load(path, allow_pickle=True).item()
    except Exception as exc:  # numpy raises several unrelated types for damaged files
        raise ValueError(f"cannot read gloss dictionary {path}: {exc}") from exc
    return check_gloss_dict(value, str(path))


def check_gloss_dict(gloss_dict: Any, source: str) -> dict:
    """Validate gloss -> [index >= 1, count] with unique indices 1..N."""
    if not isinstance(gloss_dict, Mapping) or not gloss_dict:
        raise ValueError(f"{source}: expected a non-empty dict gloss -> [index, count]")
    indices = sorted(int(v[0]) for v in gloss_dict.values())
    if indices != list(range(1, len(indices) + 1)):
        raise ValueError(f"{source}: gloss indices must be 1..{len(indices)} without gaps "
                         f"(0 is the CTC blank); rebuild it with preprocess/")
    return dict(gloss_dict)
