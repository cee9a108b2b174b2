"""Classic dict-based CTC prefix beam search of one sequence: the independent formulation that
tests (and bench/decode.py) compare decoding.beam_search against."""
from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from decoding.lm import NGramLM

_NEG_INF = float("-inf")


def reference_prefix_beam_search(log_probs: Sequence[Sequence[float]], beam_width: int = 10,
                                 top_k: int = 40, blank_id: int = 0, lm: NGramLM | None = None,
                                 words: Sequence[str | None] = (), lm_weight: float = 0.0,
                                 word_bonus: float = 0.0, token_min_logp: float | None = None,
                                 beam_prune_logp: float | None = None) -> tuple[list[int], float]:
    """Classic dict-based prefix beam search of one (T, C) sequence; slow, for tests and benchmarks.

    With `lm` (an ARPA model scored by its own dict lookups) and `words` (class -> gloss), prefixes
    are ranked by the fused score, as ctc_prefix_beam_search ranks them; the pruning options are
    ctc_prefix_beam_search's.
    """
    fused_cache: dict[tuple[int, ...], float] = {(): 0.0}

    def fused(prefix: tuple[int, ...]) -> float:
        """lm_weight * ln P_lm(prefix) + word_bonus * len(prefix) (0 without a model)."""
        if lm is None:
            return 0.0
        if prefix not in fused_cache:
            history = ["<s>", *(words[c] for c in prefix[:-1])]
            fused_cache[prefix] = (fused(prefix[:-1]) + word_bonus + lm_weight * math.log(10.0)
                                   * lm.log10_prob(history, words[prefix[-1]]))
        return fused_cache[prefix]

    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, _NEG_INF)}
    for frame in log_probs:
        candidates = heapq.nlargest(top_k, enumerate(frame), key=lambda item: item[1])
        if token_min_logp is not None:  # the best token stays whatever its probability
            candidates = candidates[:1] + [c for c in candidates[1:] if c[1] >= token_min_logp]
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_b, p_nb) in beams.items():
            p_total = _log_add(p_b, p_nb)
            last = prefix[-1] if prefix else None
            for token, lp in candidates:
                if token == blank_id:
                    entry = nxt.setdefault(prefix, [_NEG_INF, _NEG_INF])
                    entry[0] = _log_add(entry[0], p_total + lp)
                    continue
                extended = nxt.setdefault(prefix + (token,), [_NEG_INF, _NEG_INF])
                if token == last:
                    # "A A" without a blank stays "A"; a new "A" needs a blank in between.
                    extended[1] = _log_add(extended[1], p_b + lp)
                    entry = nxt.setdefault(prefix, [_NEG_INF, _NEG_INF])
                    entry[1] = _log_add(entry[1], p_nb + lp)
                else:
                    extended[1] = _log_add(extended[1], p_total + lp)
        ranked = sorted(nxt.items(), key=lambda item: _log_add(*item[1]) + fused(item[0]), reverse=True)
        ranked = ranked[:beam_width]
        if beam_prune_logp is not None:
            floor = _log_add(*ranked[0][1]) + fused(ranked[0][0]) + beam_prune_logp
            ranked = [item for item in ranked if _log_add(*item[1]) + fused(item[0]) >= floor]
        beams = {prefix: (p_b, p_nb) for prefix, (p_b, p_nb) in ranked}

    def final(prefix: tuple[int, ...]) -> float:
        """Fused score of a finished prefix, end of sentence included."""
        score = _log_add(*beams[prefix]) + fused(prefix)
        if lm is not None:
            history = ["<s>", *(words[c] for c in prefix)]
            score += lm_weight * math.log(10.0) * lm.log10_prob(history, "</s>")
        return score

    prefix = max(beams, key=final)
    return list(prefix), final(prefix)


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow, -inf safe."""
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    high, low = (a, b) if a > b else (b, a)
    return high + math.log1p(math.exp(low - high))
