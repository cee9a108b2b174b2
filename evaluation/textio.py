"""Reading scoring inputs line by line with errors that name the file and the line."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from utils.errors import BadFileError, MissingFileError


class ScoringInputError(BadFileError):
    """A reference or hypothesis file that cannot be scored; the message names file and line."""


def read_lines(path: str | os.PathLike) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, whitespace-split fields) of each non-blank, non-comment line."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ScoringInputError(
                    f"{path}:{number}: not valid UTF-8 (byte {err.start}); re-encode the file "
                    "as UTF-8, e.g. iconv -f latin1 -t utf-8") from None
            fields = line.split()
            if fields and not fields[0].startswith(";;"):  # ';;' starts a comment in CTM/STM
                yield number, fields


# Tokens NIST sclite gives a meaning of their own: ';' starts a comment, '@' is the empty word,
# '{ a / b }' is an alternation. Scoring them as glosses would silently differ from sclite.
_SCLITE_SYNTAX = frozenset({"@", "{", "}", "/"})


def check_plain_word(word: str, path: str | os.PathLike, line: int) -> str:
    """Return `word` if sclite reads it as an ordinary word, else raise naming file and line."""
    if ";" in word or word in _SCLITE_SYNTAX:
        raise ScoringInputError(f"{path}:{line}: word {word!r} has a special meaning for sclite "
                                "(';' comment, '@' empty word, '{ / }' alternation); rename the gloss")
    return word
