"""Gloss normalisation of the official PHOENIX evaluation (its preprocess.sh), as pure functions.

The official script runs sed over CTM lines (``<id> 1 <start> <end> <gloss>``). Its rules that
join two glosses on one line ("WIE AUSSEHEN", spelled letters "A B" -> "A+B", repeated words)
can never fire on one-gloss CTM lines and are therefore not part of the per-gloss rules here.
CSL-Daily is scored without normalisation.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

PHOENIX_DATASETS = ("phoenix2014", "phoenix2014-T")
DATASETS = PHOENIX_DATASETS + ("CSL-Daily",)

# Applied in this order, each to every occurrence, as the sed pipeline does.
_REMOVED_PREFIXES = ("loc-", "cl-", "qu-", "poss-", "lh-")
_RENAMED = (("S0NNE", "SONNE"), ("HABEN2", "HABEN"))
_REMOVED_MARKERS = ("__EMOTION__", "__PU__", "__LEFTHAND__")
_ROOM_SUFFIX = re.compile(r"([A-Z][A-Z])RAUM")  # SUEDRAUM -> SUED
# A line whose gloss still holds one of these is dropped (grep -v).
_DROPPED_MARKERS = ("__LEFTHAND__", "__EPENTHESIS__", "__EMOTION__")


def check_dataset(dataset: str) -> str:
    """Return `dataset` if known, else raise naming the accepted names."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    return dataset


def normalise_gloss(gloss: str) -> str:
    """One PHOENIX gloss after the official rewrites; '' means the gloss is dropped."""
    for prefix in _REMOVED_PREFIXES:
        gloss = gloss.replace(prefix, "")
    for old, new in _RENAMED:
        gloss = gloss.replace(old, new)
    for marker in _REMOVED_MARKERS:
        gloss = gloss.replace(marker, "")
    if gloss.endswith("ZEIGEN"):  # sed 's,ZEIGEN$,ZEIGEN-BILDSCHIRM,' on the line's last field
        gloss += "-BILDSCHIRM"
    gloss = _ROOM_SUFFIX.sub(r"\1", gloss)
    gloss = gloss.replace("-PLUSPLUS", "")
    if any(marker in gloss for marker in _DROPPED_MARKERS):
        return ""
    return gloss


def normalise_glosses(glosses: Iterable[str], dataset: str) -> list[str]:
    """Glosses of one sentence as scored: PHOENIX rules applied, emptied glosses dropped."""
    if check_dataset(dataset) not in PHOENIX_DATASETS:
        return list(glosses)
    return [norm for norm in map(normalise_gloss, glosses) if norm]
