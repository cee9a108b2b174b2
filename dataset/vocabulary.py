"""The vocabulary file written by preprocessing: gloss_dict.npy (gloss -> [index from 1, count])."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from utils.checkpoint import CheckpointMismatchError
from utils.errors import BadFileError, MissingFileError
from utils.npy import UnsafePickleError, load_npy_object


def load_gloss_dict(path: str | os.PathLike, hint: str = "pass the gloss_dict.npy that preprocess/ "
                    "wrote", script: str | None = None) -> dict:
    """Read gloss_dict.npy with errors that name the file; `hint` says how the caller chose it,
    `script` which preprocessing writes it (the dataset's, when the caller knows the dataset)."""
    path = Path(path)
    if not path.is_file():
        run = f"`python {script} --dataset-root ...`" if script else "the dataset's preprocess/ script"
        raise MissingFileError(f"gloss dictionary not found: {path}; {hint} (run the preprocessing "
                               f"first: {run})")
    try:
        value = load_npy_object(path)
    except UnsafePickleError:
        raise
    except Exception as exc:  # numpy raises several unrelated types for damaged files
        raise BadFileError(f"cannot read gloss dictionary {path}: {exc}") from exc
    return check_gloss_dict(value, str(path))


def check_gloss_dict(gloss_dict: Any, source: str) -> dict:
    """Validate gloss -> [index >= 1, count] with unique indices 1..N."""
    if not isinstance(gloss_dict, Mapping) or not gloss_dict:
        raise BadFileError(f"{source}: expected a non-empty dict gloss -> [index, count]")
    odd = next((g for g, v in gloss_dict.items() if not isinstance(g, str) or not _index_entry(v)), None)
    if odd is not None:
        raise BadFileError(f"{source}: the entry {odd!r}: {gloss_dict[odd]!r} is not gloss -> "
                           f"[index, count] (integers); rebuild it with preprocess/")
    indices = sorted(int(v[0]) for v in gloss_dict.values())
    if indices != list(range(1, len(indices) + 1)):
        raise BadFileError(f"{source}: gloss indices must be 1..{len(indices)} without gaps "
                           f"(0 is the CTC blank); rebuild it with preprocess/")
    return dict(gloss_dict)


def _index_entry(value: Any) -> bool:
    """Whether `value` is [index, count] (or longer) with an integer index."""
    try:
        return len(value) >= 1 and int(value[0]) == value[0]
    except (TypeError, ValueError):
        return False


def vocabulary_differences(given: Mapping[str, Any], saved: Mapping[str, Any]) -> list[str]:
    """'gloss: index A vs B' for every gloss whose index differs or that only one side has."""
    out = []
    for gloss in sorted(set(given) | set(saved)):
        a = int(given[gloss][0]) if gloss in given else None
        b = int(saved[gloss][0]) if gloss in saved else None
        if a != b:
            out.append(f"{gloss}: {'absent' if a is None else a} vs {'absent' if b is None else b}")
    return out


def check_same_vocabulary(given: Mapping[str, Any], saved: Mapping[str, Any], given_source: str,
                          saved_source: str, option: str,
                          remedy: str = "Leave it out to use the checkpoint's own") -> None:
    """Refuse a dictionary other than the checkpoint's own (class i would get another gloss's name)."""
    differences = vocabulary_differences(given, saved)
    if differences:
        raise CheckpointMismatchError(
            f"{given_source} is not the vocabulary the checkpoint was trained with ({saved_source}): "
            f"{len(differences)} glosses differ (given vs checkpoint: {'; '.join(differences[:3])}"
            f"{' ...' if len(differences) > 3 else ''}), so recognised glosses would get wrong "
            f"names. {remedy}, or pass {option} to use it anyway")
