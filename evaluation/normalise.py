"""Gloss normalisation of the official PHOENIX evaluation (its preprocess.sh), as pure functions.

The official script runs sed over CTM lines (``<id> 1 <start> <end> <gloss>``). Its rules that
join two glosses on one line ("WIE AUSSEHEN", spelled letters "A B" -> "A+B", repeated words)
can never fire on one-gloss CTM lines and are therefore not part of the per-gloss rules here.
Which rules a dataset is scored with is its registry entry's gloss_normalisation (dataset/registry.py):
'phoenix' for PHOENIX-2014 and -T, none for CSL-Daily.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from dataset.registry import DatasetSpec

# Applied in this order, each to every occurrence, as the sed pipeline does.
_REMOVED_PREFIXES = ("loc-", "cl-", "qu-", "poss-", "lh-")
_RENAMED = (("S0NNE", "SONNE"), ("HABEN2", "HABEN"))
_REMOVED_MARKERS = ("__EMOTION__", "__PU__", "__LEFTHAND__")
_ROOM_SUFFIX = re.compile(r"([A-Z][A-Z])RAUM")  # SUEDRAUM -> SUED
# A line whose gloss still holds one of these is dropped (grep -v).
_DROPPED_MARKERS = ("__LEFTHAND__", "__EPENTHESIS__", "__EMOTION__")


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


# A registry entry's gloss_normalisation -> its per-gloss rule ('' drops the gloss).
RULES: dict[str, Callable[[str], str]] = {"phoenix": normalise_gloss}


def normalise_glosses(glosses: Iterable[str], spec: DatasetSpec) -> list[str]:
    """Glosses of one sentence as scored: dataset `spec`'s rules applied, emptied glosses dropped."""
    rules = spec.gloss_normalisation
    if rules is None:
        return list(glosses)
    return [norm for norm in map(RULES[rules], glosses) if norm]
