"""ARPA back-off model files: read any (KenLM, SRILM, IRSTLM or ours), write ours as lmplz does."""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from decoding.lm import NGramLM
from utils.atomic import atomic_path
from utils.errors import BadFileError, MissingFileError


class ArpaError(BadFileError):
    """A malformed ARPA file, with the file and line."""


def write_arpa(model: NGramLM, path: str | os.PathLike) -> None:
    """Write the model as an ARPA file (orders ascending, backoffs on every order but the last)."""
    by_order: dict[int, list[tuple[str, ...]]] = defaultdict(list)
    for gram in model.probs:
        by_order[len(gram)].append(gram)
    lines = ["", "\\data\\"]
    lines += [f"ngram {n}={len(by_order[n])}" for n in range(1, model.order + 1)]
    for n in range(1, model.order + 1):
        lines += ["", f"\\{n}-grams:"]
        for gram in by_order[n]:
            row = f"{_fmt(model.probs[gram])}\t{' '.join(gram)}"
            if n < model.order:
                row += f"\t{_fmt(model.backoffs.get(gram, 0.0))}"
            lines.append(row)
    lines += ["", "\\end\\", ""]
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_text("\n".join(lines), encoding="utf-8")


def _fmt(value: float) -> str:
    """A log10 value as lmplz prints it (7 significant digits, plain 0)."""
    return "0" if value == 0 else f"{value:.7g}"


def read_arpa(path: str | os.PathLike) -> NGramLM:
    """Read any ARPA back-off model (KenLM, SRILM, IRSTLM or ours)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"language model {path} not found; build one with `python "
                               f"preprocess/gloss_lm.py --annotations <train_info.npy|.stm> --out {path}`")
    declared: dict[int, int] = {}
    probs: dict[tuple[str, ...], float] = {}
    backoffs: dict[tuple[str, ...], float] = {}
    section: int | None = None  # 0 while in \data\, n in \n-grams:
    ended = False
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line or ended:
                continue
            if line == "\\data\\":
                section = 0
            elif line == "\\end\\":
                ended = True
            elif line.startswith("\\") and line.endswith("-grams:"):
                try:
                    section = int(line[1:-len("-grams:")])
                except ValueError:
                    raise ArpaError(f"{path}:{number}: bad section header {line!r}") from None
                if section not in declared:
                    raise ArpaError(f"{path}:{number}: {section}-grams are not declared in \\data\\")
            elif section == 0:
                key, _, value = line.partition("=")
                if not key.startswith("ngram ") or not value.strip().isdigit():
                    raise ArpaError(f"{path}:{number}: expected 'ngram N=COUNT', got {line!r}")
                declared[int(key.split()[1])] = int(value)
            elif section:
                fields = line.split()
                if len(fields) not in (section + 1, section + 2):
                    raise ArpaError(f"{path}:{number}: a {section}-gram line needs a log10 "
                                    f"probability, {section} words and an optional backoff; "
                                    f"got {line!r}")
                try:
                    gram = tuple(fields[1:section + 1])
                    probs[gram] = float(fields[0])
                    if len(fields) == section + 2:
                        backoffs[gram] = float(fields[-1])
                except ValueError:
                    raise ArpaError(f"{path}:{number}: not a number in {line!r}") from None
            elif section is None:
                continue  # free text before \data\ is allowed
    if not declared or not ended:
        raise ArpaError(f"{path}: not an ARPA file (needs \\data\\ ... \\end\\)")
    for n, count in declared.items():
        found = sum(1 for gram in probs if len(gram) == n)
        if found != count:
            raise ArpaError(f"{path}: \\data\\ declares {count} {n}-grams, the file has {found}")
    return NGramLM(order=max(declared), probs=probs, backoffs=backoffs)
