"""Gloss n-gram language models as ARPA back-off models score them: dict lookups (NGramLM) and
the same model as sorted integer tables on a device for the batched beam search (TokenLM).

Sentences are scored as KenLM scores them: the context starts as ``<s>``, words outside the
vocabulary are ``<unk>``, ``</s>`` ends the sentence. decoding/build_lm.py estimates a model,
decoding/arpa.py reads and writes ARPA files.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
NO_UNK_LOG10 = -100.0  # what KenLM assigns to an unknown word when the model has no <unk>
LN_10 = math.log(10.0)


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


class TokenLM:
    """An NGramLM over class indices as sorted integer-key tables on a device, for batched lookups.

    Class `i` is the word `words[i]` (glosses outside the model are `<unk>`); an n-gram of LM word
    ids is one int64 key (base = vocabulary size), so a lookup is one `searchsorted` per order.
    Scores are natural logs (log10 values times ln 10), as ctcdecode and pyctcdecode use.
    """

    def __init__(self, model: NGramLM, words: Sequence[str | None],
                 device: torch.device | str = "cpu") -> None:
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

    def _lookup(self, tagged: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(found, log prob, log backoff) of order-tagged n-gram keys (any shape), in one search."""
        flat = tagged.reshape(-1)
        index = torch.searchsorted(self.keys, flat).clamp(max=self.keys.numel() - 1)
        found = self.keys.index_select(0, index) == flat
        return (found.view(tagged.shape), self.prob.index_select(0, index).view(tagged.shape),
                self.bow.index_select(0, index).view(tagged.shape))

    def initial_history(self, *shape: int) -> torch.Tensor:
        """Word-id histories (..., order - 1) of empty prefixes: <s> (repeated <s> is never in a model)."""
        return torch.full((*shape, max(self.order - 1, 0)), self.bos, dtype=torch.long,
                          device=self.device)

    def log_prob(self, history: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """ln P(word | history) for histories (..., order-1) and LM word ids (..., K) -> (..., K)."""
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

    def word_ids(self, classes: torch.Tensor) -> torch.Tensor:
        """LM word ids of class indices."""
        return self.class_to_word[classes]

    def advance(self, history: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """Histories after appending one word id each."""
        if history.shape[-1] == 0:
            return history
        return torch.cat([history[..., 1:], words[..., None]], dim=-1)
