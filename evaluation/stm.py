"""STM reference files: ``<fileid> <channel> <speaker> <start> <end> [<label>] <words...>``."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from evaluation.textio import ScoringInputError, check_plain_word, read_lines

WHOLE_FILE_END = "1.79769e+308"  # the PHOENIX STMs' end time: the segment covers the whole file


@dataclass(frozen=True)
class StmSegment:
    """One reference sentence."""

    fileid: str
    channel: str
    speaker: str
    start: float
    end: float
    words: tuple[str, ...]
    line: int


def read_stm(path: str | os.PathLike) -> list[StmSegment]:
    """Reference segments in file order; one segment per file id, as the sign datasets use."""
    segments: list[StmSegment] = []
    seen: dict[str, int] = {}
    for number, fields in read_lines(path):
        if len(fields) < 5:
            raise ScoringInputError(f"{path}:{number}: expected '<fileid> <channel> <speaker> <start> "
                                    f"<end> <words...>', got {len(fields)} fields")
        try:
            start, end = float(fields[3]), float(fields[4])
        except ValueError:
            raise ScoringInputError(f"{path}:{number}: start and end must be numbers, got "
                                    f"{fields[3]!r} and {fields[4]!r}") from None
        words = fields[5:]
        if words and words[0].startswith("<") and words[0].endswith(">"):
            words = words[1:]  # optional segment label such as <o,f0,male>
        for word in words:
            check_plain_word(word, path, number)
        if fields[0] in seen:
            raise ScoringInputError(f"{path}:{number}: file id {fields[0]!r} already has a segment on "
                                    f"line {seen[fields[0]]}; one sentence per file id is expected")
        seen[fields[0]] = number
        segments.append(StmSegment(fields[0], fields[1], fields[2], start, end, tuple(words), number))
    return segments


def stm_line(fileid: str, speaker: str, words: Sequence[str], channel: str = "1") -> str:
    """One whole-file segment, as every published STM writes it: `<fileid> <channel> <speaker> 0.0
    1.79769e+308 <words...>` and its newline (one space before the words even when there are none)."""
    return f"{fileid} {channel} {speaker} 0.0 {WHOLE_FILE_END} {' '.join(words)}\n"
