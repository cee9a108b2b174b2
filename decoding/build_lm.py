"""Build a gloss n-gram language model (ARPA) from a split's annotations, for beam-search fusion.

    python preprocess/gloss_lm.py --annotations preprocess/phoenix2014/train_info.npy \\
        --out preprocess/phoenix2014/gloss-3gram.arpa [--order 3]

Annotations: a ``<split>_info.npy`` written by the dataset scripts, a ground-truth ``.stm``, or a
text file with one sentence per line; the ARPA file is what ``decode.lm_path`` / ``--lm-path`` take.

Estimation is interpolated modified Kneser-Ney as KenLM's ``lmplz`` computes it: raw counts for
the highest order and for n-grams that start with ``<s>``, otherwise adjusted counts (the number
of distinct words seen to the left); three discounts per order from its counts of counts (Chen
and Goodman, eq. 26); every order interpolated with the one below, the unigrams with the uniform
distribution over the vocabulary without ``<s>`` (``<unk>`` included, with count 0). Where the
counts of counts cannot give discounts (tiny corpora), lmplz's ``--discount_fallback`` values
0.5, 1, 1.5 are used, with a warning.
"""
from __future__ import annotations

import argparse
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from decoding.arpa import write_arpa
from decoding.lm import BOS, EOS, UNK, NGramLM
from utils.errors import BadFileError, ConfigError, MissingFileError, run_cli

FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # lmplz --discount_fallback defaults


def estimate_kneser_ney(sentences: Iterable[Sequence[str]], order: int = 3) -> NGramLM:
    """Interpolated modified Kneser-Ney n-gram model of the sentences, as lmplz estimates it."""
    if order < 1:
        raise ConfigError(f"order must be >= 1 (--order), got {order}")
    counts = _adjusted_counts(sentences, order)
    if not counts[0]:
        raise BadFileError("the annotations hold no sentence with glosses to estimate a language model from")
    discounts = [_discounts(counts[n], n + 1) for n in range(order)]
    # Unigram vocabulary: <unk> and <s> with count 0 as lmplz adds them.
    unigrams = {(UNK,): 0, (BOS,): 0, **counts[0]}
    counts[0] = unigrams
    uniform = 1.0 / (len(unigrams) - 1)  # <s> is never predicted
    probs: dict[tuple[str, ...], float] = {}
    gammas: dict[tuple[str, ...], float] = {}
    lower: dict[tuple[str, ...], float] = {}  # interpolated probabilities of the order below
    for n in range(order):
        table = counts[n]
        denominators: dict[tuple[str, ...], float] = defaultdict(float)
        mass: dict[tuple[str, ...], float] = defaultdict(float)
        for gram, count in table.items():
            if gram == (BOS,):
                continue
            denominators[gram[:-1]] += count
            if count > 0:
                mass[gram[:-1]] += discounts[n][min(count, 3)]
        current: dict[tuple[str, ...], float] = {}
        for gram, count in table.items():
            if gram == (BOS,):
                continue
            context = gram[:-1]
            denom = denominators[context]
            gamma = mass[context] / denom
            below = uniform if n == 0 else lower[gram[1:]]
            current[gram] = (count - discounts[n][min(count, 3)] if count else 0.0) / denom + gamma * below
            gammas[context] = gamma
        probs.update(current)
        lower = current
    model = NGramLM(order=order)
    for n in range(order):
        for gram in sorted(counts[n], key=_arpa_sort_key):
            if gram == (BOS,):
                model.probs[gram] = 0.0  # lmplz's value; <s> is only ever a context
            else:
                model.probs[gram] = min(0.0, math.log10(probs[gram]))
            if n + 1 < order:
                is_context = gram in gammas and gram[-1] not in (UNK, EOS)
                model.backoffs[gram] = math.log10(gammas[gram]) if is_context else 0.0
    return model


def _arpa_sort_key(gram: tuple[str, ...]) -> tuple:
    """<unk>, <s>, </s> first (as lmplz lists them), then the rest in order."""
    special = {UNK: 0, BOS: 1, EOS: 2}
    return tuple((special.get(word, 3), word) for word in gram)


def _adjusted_counts(sentences: Iterable[Sequence[str]], order: int) -> list[dict[tuple[str, ...], int]]:
    """Per order (0-based): raw counts for the top order and <s>-initial n-grams, else left-extension counts."""
    raw: dict[tuple[str, ...], int] = defaultdict(int)
    for sentence in sentences:
        words = [BOS, *(w for w in sentence if w not in (BOS, EOS)), EOS]
        if len(words) == 2:
            continue  # an empty sentence: lmplz skips it too
        for end in range(1, len(words)):
            raw[tuple(words[max(0, end - order + 1):end + 1])] += 1
    counts: list[dict[tuple[str, ...], int]] = [dict() for _ in range(order)]
    for gram, count in raw.items():  # full-order n-grams and the truncated ones that start with <s>
        counts[len(gram) - 1][gram] = count
    for n in range(order - 1, 0, -1):  # n: 0-based order of the longer n-grams
        extensions: dict[tuple[str, ...], int] = defaultdict(int)
        for gram in counts[n]:
            extensions[gram[1:]] += 1
        for suffix, distinct in extensions.items():
            if suffix[0] != BOS:  # <s>-initial n-grams keep their raw counts
                counts[n - 1][suffix] = distinct
    return counts


def _discounts(table: Mapping[tuple[str, ...], int], order: int) -> tuple[float, ...]:
    """(0, D1, D2, D3+) from counts of counts (Chen & Goodman eq. 26), lmplz's fallback when undefined."""
    n = [0] * 5
    for count in table.values():
        if 0 < count < 5:
            n[count] += 1
    try:
        if min(n[1:4]) == 0:
            raise ValueError(f"no {order}-grams with adjusted count {n[1:4].index(0) + 1}")
        y = n[1] / (n[1] + 2.0 * n[2])
        values = [j - (j + 1) * y * n[j + 1] / n[j] for j in (1, 2, 3)]
        if any(not 0.0 <= d <= j for j, d in zip((1, 2, 3), values)):
            raise ValueError(f"{order}-gram discounts {values} out of range")
    except ValueError as exc:
        warnings.warn(f"could not estimate Kneser-Ney discounts ({exc}; is the corpus tiny?): "
                      f"using lmplz's fallback D1={FALLBACK_DISCOUNTS[0]} D2={FALLBACK_DISCOUNTS[1]} "
                      f"D3+={FALLBACK_DISCOUNTS[2]}", stacklevel=3)
        values = list(FALLBACK_DISCOUNTS)
    return (0.0, *values)


def read_sentences(path: str | os.PathLike) -> list[list[str]]:
    """Gloss sentences of a split: a `<split>_info.npy` from preprocess/, an STM, or plain text."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"annotations {path} not found (a <split>_info.npy written by "
                               f"preprocess/, a ground-truth .stm, or one sentence per line)")
    if path.suffix == ".npy":
        from dataset.feeder import load_info

        return [str(entry["label"]).split() for entry in load_info(path)]
    if path.suffix == ".stm":
        from evaluation.stm import read_stm

        return [list(segment.words) for segment in read_stm(path)]
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """preprocess/gloss_lm.py's command line: build the ARPA model; 2 with an `error:` line on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n")[1])
    parser.add_argument("--annotations", nargs="+", required=True,
                        help="train_info.npy (preprocess/ output), a .stm, or a text file of sentences")
    parser.add_argument("--out", required=True, help="ARPA file to write")
    parser.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    args = parser.parse_args(argv)
    return run_cli(lambda: build(args))


def build(args: argparse.Namespace) -> None:
    """Estimate the model from the annotations named on the command line and write it."""
    sentences = [s for path in args.annotations for s in read_sentences(path)]
    model = estimate_kneser_ney(sentences, args.order)
    write_arpa(model, args.out)
    sizes = ", ".join(f"{sum(1 for g in model.probs if len(g) == n)} {n}-grams"
                      for n in range(1, model.order + 1))
    print(f"wrote {args.out}: {len(sentences)} sentences, {sizes}")
