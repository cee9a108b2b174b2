"""CTM hypothesis files: ``<fileid> <channel> <start> <duration> <word> [<confidence>]``."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from evaluation.textio import ScoringInputError, check_plain_word, read_lines


@dataclass(frozen=True)
class CtmWord:
    """One hypothesis word and where it came from."""

    fileid: str
    channel: str
    start: float
    duration: float
    word: str
    line: int


def read_ctm(path: str | os.PathLike) -> list[CtmWord]:
    """All words of a CTM file in line order; malformed lines raise ScoringInputError."""
    words = []
    for number, fields in read_lines(path):
        if len(fields) not in (5, 6):
            raise ScoringInputError(
                f"{path}:{number}: expected 5 or 6 fields '<fileid> <channel> <start> <duration> "
                f"<word> [<confidence>]', got {len(fields)}: {' '.join(fields)!r}")
        try:
            start, duration = float(fields[2]), float(fields[3])
        except ValueError:
            raise ScoringInputError(f"{path}:{number}: start and duration must be numbers, got "
                                    f"{fields[2]!r} and {fields[3]!r}") from None
        word = check_plain_word(fields[4], path, number)
        if len(fields) == 6:
            check_confidence(fields[5], path, number)
        words.append(CtmWord(fields[0], fields[1], start, duration, word, number))
    return words


def check_confidence(text: str, path: str | os.PathLike, line: int) -> float:
    """The optional sixth field as a finite number, else a ScoringInputError naming file and line."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ScoringInputError(f"{path}:{line}: the confidence (sixth field) must be a number, got {text!r}; "
                                f"write a number or leave the field out")
    return value


def write_ctm(path: str | os.PathLike, hypotheses: Mapping[str, Sequence[str]]) -> None:
    """Write one line per gloss, ``<fileid> 1 <i/100> <(i+1)/100> <gloss>``, as the original did."""
    lines = []
    for fileid, glosses in hypotheses.items():
        _check_token(fileid, "file id", fileid)
        for index, gloss in enumerate(glosses):
            _check_token(gloss, "gloss", fileid)
            lines.append(f"{fileid} 1 {index / 100:.2f} {(index + 1) / 100:.2f} {gloss}\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")


def _check_token(token: str, what: str, fileid: str) -> None:
    """A CTM field must be non-empty and free of whitespace."""
    if not isinstance(token, str) or not token or len(token.split()) != 1 or token != token.strip():
        raise ValueError(f"{what} {token!r} of {fileid!r} must be a non-empty string without spaces")
