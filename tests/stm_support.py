"""Writing small ground-truth STM files for tests (the product writes STMs in preprocess/)."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from evaluation.stm import stm_line


def write_stm(path: str | os.PathLike, sentences: Iterable[tuple[str, str, Sequence[str]]]) -> None:
    """Write (fileid, speaker, glosses) as whole-file segments on channel 1, like the PHOENIX STMs."""
    lines = []
    for fileid, speaker, glosses in sentences:
        for token, what in [(fileid, "file id"), (speaker, "speaker"), *((g, "gloss") for g in glosses)]:
            if not token or len(token.split()) != 1 or token != token.strip():
                raise ValueError(f"{what} {token!r} of {fileid!r} must be non-empty without spaces")
        lines.append(stm_line(fileid, speaker, glosses))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")
