"""Gloss n-gram language models: estimate, write and read ARPA files, score with backoff.

Estimation is interpolated modified Kneser-Ney as KenLM's ``lmplz`` computes it: raw counts for
the highest order and for n-grams that start with ``<s>``, otherwise adjusted counts (the number
of distinct words seen to the left); three discounts per order from its counts of counts (Chen
and Goodman, eq. 26); every order interpolated with the one below, the unigrams with the uniform
distribution over the vocabulary without ``<s>`` (``<unk>`` included, with count 0). Where the
counts of counts cannot give discounts (tiny corpora), lmplz's ``--discount_fallback`` values
0.5, 1, 1.5 are used, with a warning. Sentences are scored as KenLM scores them: the context
starts as ``<s>``, words outside the vocabulary are ``<unk>``, ``</s>`` ends the sentence.
``preprocess/gloss_lm.py`` builds a model from a split's annotations.
"""
from __future__ import annotations

import math
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: estimating and reading ARPA files need no torch
    import torch

from utils.errors import BadFileError, ConfigError, MissingFileError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
NO_UNK_LOG10 = -100.0  # what KenLM assigns to an unknown word when the model has no <unk>
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # lmplz --discount_fallback defaults
LN_10 = math.log(10.0)


class ArpaError(BadFileError):
    """A malformed ARPA file, with the file and line."""


@dataclass
class NGramLM:
    """A backoff n-gram model; probabilities and backoffs are log10, keyed by word tuples."""

    order: int
    probs: dict[tuple[str, ...], float] = field(default_factory=dict)
    backoffs: dict[tuple[str, ...], float] = field(default_factory=dict)

    @property
    def vocabulary(self) -> list[str]:
        """The unigrams in file order."""
        return [gram[0] for gram in self.probs if len(gram) == 1]

    def log10_prob(self, context: Sequence[str], word: str) -> float:
        """log10 P(word | context) by ARPA backoff; `context` is the preceding words (may start with <s>)."""
        word = word if (word,) in self.probs else UNK
        context = tuple(c if (c,) in self.probs or c == BOS else UNK for c in context)
        context = context[max(0, len(context) - self.order + 1):]
        backoff = 0.0
        for start in range(len(context) + 1):
            gram = context[start:] + (word,)
            if gram in self.probs:
                return backoff + self.probs[gram]
            backoff += self.backoffs.get(context[start:], 0.0)
        return backoff + NO_UNK_LOG10  # only reached when the model has no <unk>

    def sentence_log10(self, words: Sequence[str], eos: bool = True) -> float:
        """log10 P of a sentence that starts after <s> (and ends with </s> if `eos`)."""
        history: list[str] = [BOS]
        total = 0.0
        for word in [*words, EOS] if eos else words:
            total += self.log10_prob(history, word)
            history.append(word)
        return total

    def write_arpa(self, path: str | os.PathLike) -> None:
        """Write the model as an ARPA file (orders ascending, backoffs on every order but the last)."""
        from utils.atomic import atomic_path

        by_order: dict[int, list[tuple[str, ...]]] = defaultdict(list)
        for gram in self.probs:
            by_order[len(gram)].append(gram)
        lines = ["", "\\data\\"]
        lines += [f"ngram {n}={len(by_order[n])}" for n in range(1, self.order + 1)]
        for n in range(1, self.order + 1):
            lines += ["", f"\\{n}-grams:"]
            for gram in by_order[n]:
                row = f"{_fmt(self.probs[gram])}\t{' '.join(gram)}"
                if n < self.order:
                    row += f"\t{_fmt(self.backoffs.get(gram, 0.0))}"
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


class TokenLM:
    """An NGramLM over class indices as sorted integer-key tables on a device, for batched lookups.

    Class `i` is the word `words[i]` (glosses outside the model are `<unk>`); an n-gram of LM word
    ids is one int64 key (base = vocabulary size), so a lookup is one `searchsorted` per order.
    Scores are natural logs (log10 values times ln 10), as ctcdecode and pyctcdecode use.
    """

    def __init__(self, model: NGramLM, words: Sequence[str | None],
                 device: "torch.device | str" = "cpu") -> None:
        import torch

        vocab = [BOS, EOS, UNK] + sorted({g[0] for g in model.probs if len(g) == 1} - {BOS, EOS, UNK})
        self.word_id = {word: i for i, word in enumerate(vocab)}
        self.base = len(vocab)
        if self.base ** model.order * model.order >= 2 ** 63:
            raise ValueError(f"a {model.order}-gram model over {self.base} words does not fit "
                             f"64-bit keys; use a lower order")
        self.order = model.order
        self.device = torch.device(device)
        unk = self.word_id[UNK]
        self.class_to_word = torch.tensor([self.word_id.get(w, unk) if w is not None else unk
                                           for w in words], dtype=torch.long, device=self.device)
        self.bos, self.eos = self.word_id[BOS], self.word_id[EOS]
        probs = dict(model.probs)
        probs.setdefault((UNK,), NO_UNK_LOG10)  # as KenLM scores unknown words without <unk>
        # One sorted table of every order: an n-gram's key is tagged with n, key * order + n - 1.
        grams = [g for g in probs if all(w in self.word_id for w in g)]
        keys = torch.tensor([self._key([self.word_id[w] for w in g]) * self.order + len(g) - 1
                             for g in grams], dtype=torch.long)
        order = keys.argsort()
        prob = torch.tensor([probs[g] for g in grams], dtype=torch.float64) * LN_10
        bow = torch.tensor([model.backoffs.get(g, 0.0) for g in grams], dtype=torch.float64) * LN_10
        self.keys, self.prob, self.bow = (t[order].to(self.device) for t in (keys, prob.float(), bow.float()))

    def _key(self, ids: Sequence[int]) -> int:
        """The int64 key of an n-gram of word ids."""
        key = 0
        for i in ids:
            key = key * self.base + i
        return key

    def _lookup(self, tagged: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
        """(found, log prob, log backoff) of order-tagged n-gram keys (any shape), in one search."""
        import torch

        flat = tagged.reshape(-1)
        index = torch.searchsorted(self.keys, flat).clamp(max=self.keys.numel() - 1)
        found = self.keys.index_select(0, index) == flat
        return (found.view(tagged.shape), self.prob.index_select(0, index).view(tagged.shape),
                self.bow.index_select(0, index).view(tagged.shape))

    def initial_history(self, *shape: int) -> "torch.Tensor":
        """Word-id histories (..., order - 1) of empty prefixes: <s> (repeated <s> is never in a model)."""
        import torch

        return torch.full((*shape, max(self.order - 1, 0)), self.bos, dtype=torch.long,
                          device=self.device)

    def log_prob(self, history: "torch.Tensor", words: "torch.Tensor") -> "torch.Tensor":
        """ln P(word | history) for histories (..., order-1) and LM word ids (..., K) -> (..., K)."""
        import torch

        # context_keys[m]: key of the last m history words, broadcast against the K words.
        context_keys = [torch.zeros_like(words)]
        for m in range(1, self.order):
            context_keys.append(history[..., -m, None] * self.base ** (m - 1) + context_keys[-1])
        # Every lookup of the backoff chain in one search: the n-grams of orders order..1 (rows
        # 0..order-1), then the contexts of orders order-1..1 whose backoffs apply.
        queries = ([(context_keys[n - 1] * self.base + words) * self.order + n - 1
                    for n in range(self.order, 0, -1)]
                   + [context_keys[n - 1] * self.order + n - 2 for n in range(self.order, 1, -1)])
        found, prob, bow = self._lookup(torch.stack(queries))
        backoff = torch.zeros(words.shape, device=words.device)
        result = torch.zeros(words.shape, device=words.device)
        done = torch.zeros(words.shape, dtype=torch.bool, device=words.device)
        # ARPA backoff: the longest n-gram that exists, plus the backoffs of the longer contexts.
        for row, n in enumerate(range(self.order, 0, -1)):
            result = torch.where(~done & found[row], backoff + prob[row], result)
            done = done | found[row]
            if n > 1:
                context = self.order + row
                backoff = backoff + torch.where(found[context], bow[context], 0.0)
        return result

    def word_ids(self, classes: "torch.Tensor") -> "torch.Tensor":
        """LM word ids of class indices."""
        return self.class_to_word[classes]

    def advance(self, history: "torch.Tensor", words: "torch.Tensor") -> "torch.Tensor":
        """Histories after appending one word id each."""
        import torch

        if history.shape[-1] == 0:
            return history
        return torch.cat([history[..., 1:], words[..., None]], dim=-1)
