"""CTC prefix beam search in plain PyTorch, vectorised over the batch and the beam.

Semantics follow ctcdecode's ``CTCBeamDecoder``: at every frame only the ``top_k`` most probable
tokens (blank included) are considered (ctcdecode's ``cutoff_top_n=40``), prefixes that become
equal are merged by summing their probabilities, and the ``beam_width`` best prefixes survive.
The only Python loop is over time steps.

Shallow fusion with a gloss n-gram model (``lm``, a ``utils.lm.TokenLM``): a prefix is ranked by
log P_ctc + lm_weight * ln P_lm(glosses) + word_bonus * len(glosses), the LM term added when the
prefix is extended by a gloss, and ln P_lm(</s> | prefix) added after the last frame, as
ctcdecode and pyctcdecode do. Each class is one gloss, i.e. one LM word. Without ``lm`` the
search is exactly the plain one.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from utils.lm import NGramLM, TokenLM

_NEG_INF = float("-inf")
_PAD = -1  # token value of unused prefix positions; never a real class index


@dataclass(frozen=True)
class BeamSearchResult:
    """Beams sorted best first: tokens (B, W, T) padded with -1, lengths (B, W), scores (B, W).

    Scores are log P_ctc, or with a language model the fused score (end of sentence included).
    """

    tokens: Tensor
    lengths: Tensor
    scores: Tensor

    def best(self, batch_index: int) -> list[int]:
        """Token ids of the most probable prefix of one sample."""
        length = int(self.lengths[batch_index, 0])
        return self.tokens[batch_index, 0, :length].tolist()


def ctc_prefix_beam_search(log_probs: Tensor, lengths: Tensor | Sequence[int], beam_width: int = 10,
                           top_k: int = 40, blank_id: int = 0, lm: TokenLM | None = None,
                           lm_weight: float = 0.0, word_bonus: float = 0.0) -> BeamSearchResult:
    """Best CTC prefixes of (B, T, C) log-probabilities (frames beyond `lengths` ignored), LM-fused if `lm`."""
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (batch, time, classes), got shape {tuple(log_probs.shape)}")
    batch, max_time, num_classes = log_probs.shape
    if not 0 <= blank_id < num_classes:
        raise ValueError(f"blank_id={blank_id} is outside the {num_classes} classes of log_probs")
    if beam_width < 1 or top_k < 1:
        raise ValueError(f"beam_width and top_k must be >= 1, got {beam_width} and {top_k}")
    device = log_probs.device
    lengths = torch.as_tensor(lengths).to(device=device, dtype=torch.long).reshape(-1)
    if lengths.numel() != batch or bool(((lengths < 0) | (lengths > max_time)).any()):
        raise ValueError(f"lengths {lengths.tolist()} must give one value in 0..{max_time} per sample")
    width, k = beam_width, min(top_k, num_classes)
    log_probs = log_probs.float()

    # Beam state. Only beam 0 (the empty prefix, probability 1 of ending in blank) starts alive.
    tokens = torch.full((batch, width, max(max_time, 1)), _PAD, dtype=torch.long, device=device)
    prefix_len = torch.zeros(batch, width, dtype=torch.long, device=device)
    last = torch.full((batch, width), _PAD, dtype=torch.long, device=device)
    p_blank = torch.full((batch, width), _NEG_INF, device=device)
    p_blank[:, 0] = 0.0
    p_label = torch.full((batch, width), _NEG_INF, device=device)
    positions = torch.arange(tokens.shape[-1], device=device)

    fusion = None
    if lm is not None:
        if lm.device != device:
            raise ValueError(f"the language model tables are on {lm.device}, log_probs on {device}")
        if lm.class_to_word.numel() != num_classes:
            raise ValueError(f"the language model maps {lm.class_to_word.numel()} classes, "
                             f"log_probs has {num_classes}")
        # LM state per beam: accumulated fused terms and the last order-1 LM word ids.
        fusion = _Fusion(lm, lm_weight, word_bonus, torch.zeros(batch, width, device=device),
                         lm.initial_history(batch, width).to(device))

    # Every frame pruned up front in one call; frames beyond a sample's length are skipped.
    valid = torch.arange(max_time, device=device) < lengths[:, None]
    frame_lp = torch.zeros(batch, max_time, k, device=device)
    frame_tok = torch.zeros(batch, max_time, k, dtype=torch.long, device=device)
    frame_lp[valid], frame_tok[valid] = log_probs[valid].topk(k, dim=1)
    for t in range(max_time):
        active = (t < lengths)[:, None]
        new_state = _beam_step(frame_lp[:, t], frame_tok[:, t], tokens, prefix_len, last, p_blank,
                               p_label, positions, width, k, blank_id, fusion)
        old_state = (tokens, prefix_len, last, p_blank, p_label)
        if fusion is not None:
            old_state += (fusion.score, fusion.history)
        new_state = tuple(torch.where(active[..., None] if new.dim() == 3 else active, new, old)
                          for new, old in zip(new_state, old_state))
        tokens, prefix_len, last, p_blank, p_label = new_state[:5]
        if fusion is not None:
            fusion.score, fusion.history = new_state[5:]

    scores = torch.logaddexp(p_blank, p_label)
    if fusion is not None:
        scores = scores + fusion.score + fusion.weight * fusion.lm.log_prob(
            fusion.history, torch.full_like(prefix_len, fusion.lm.eos)[..., None])[..., 0]
    order = scores.argsort(dim=1, descending=True, stable=True)
    tokens = tokens.gather(1, order[..., None].expand_as(tokens))[..., :max_time]
    return BeamSearchResult(tokens=tokens, lengths=prefix_len.gather(1, order),
                            scores=scores.gather(1, order))


@dataclass
class _Fusion:
    """Shallow-fusion state of every beam: fused LM terms so far and LM word histories."""

    lm: TokenLM
    weight: float
    bonus: float
    score: Tensor    # (B, W) lm_weight * ln P_lm(prefix) + word_bonus * len(prefix)
    history: Tensor  # (B, W, order - 1) LM word ids

    def ranking_scores(self, scores: Tensor, cand_tok: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """Fused (B, W + W*K) ranking scores of stays and extensions; the extensions' fused terms
        (B, W*K) and LM word ids.

        LM lookups are made only for extensions that can enter the beam: with lm_weight >= 0 an
        extension scores at most its CTC score + the prefix's fused terms + max(word_bonus, 0).
        The W best extensions by that bound are scored first; the W-th best of them and of the
        stays bounds the W-th best candidate from below, and only extensions whose bound reaches
        it are scored too. The rest get -inf, which selects the same beams.
        """
        batch, width = self.score.shape
        words = self.lm.word_ids(cand_tok)[:, None, :].expand(-1, width, -1).reshape(batch, width * k)
        stays = scores[:, :width] + self.score
        base = self.score.repeat_interleave(k, dim=1)  # (B, W*K): the parent beam's fused terms
        ext = scores[:, width:]
        terms = torch.full_like(base, _NEG_INF)
        if self.weight < 0:  # no bound: score every live extension
            self._score(terms, ext > _NEG_INF, base, words, k)
        else:
            bound = ext + base + max(self.bonus, 0.0)
            first = torch.zeros_like(bound, dtype=torch.bool).scatter_(
                1, bound.topk(min(width, bound.shape[1]), dim=1).indices, True) & (ext > _NEG_INF)
            self._score(terms, first, base, words, k)
            known = torch.cat([stays, ext + terms], dim=1)
            threshold = known.topk(width, dim=1).values[:, -1:]
            self._score(terms, (bound >= threshold) & ~first & (ext > _NEG_INF), base, words, k)
        return torch.cat([stays, ext + terms], dim=1), terms, words

    def _score(self, terms: Tensor, need: Tensor, base: Tensor, words: Tensor, k: int) -> None:
        """Fill `terms` where `need`: parent's fused terms + lm_weight * ln P_lm + word_bonus."""
        rows, cols = need.nonzero(as_tuple=True)
        if rows.numel():
            history = self.history[rows, cols // k]  # (N, order - 1)
            lp = self.lm.log_prob(history, words[rows, cols][:, None])[:, 0]
            terms[rows, cols] = base[rows, cols] + (self.weight * lp + self.bonus)


def _beam_step(cand_lp: Tensor, cand_tok: Tensor, tokens: Tensor, prefix_len: Tensor, last: Tensor,
               p_blank: Tensor, p_label: Tensor, positions: Tensor, width: int, k: int,
               blank_id: int, fusion: _Fusion | None = None) -> tuple[Tensor, ...]:
    """Advance every beam by one frame: extend, merge equal prefixes, keep the `width` best."""
    batch = cand_lp.shape[0]  # cand_lp, cand_tok: (B, K) this frame's top-k tokens
    is_blank = cand_tok == blank_id
    blank_lp = torch.where(is_blank, cand_lp, _NEG_INF).amax(dim=1)  # -inf when pruned away
    same_as_last = cand_tok[:, None, :] == last[:, :, None]  # (B, W, K)
    last_lp = torch.where(same_as_last, cand_lp[:, None, :], _NEG_INF).amax(dim=2)
    total = torch.logaddexp(p_blank, p_label)
    alive = total > _NEG_INF

    # Prefix unchanged: a blank, or a repeat of the last label without a blank in between.
    stay_blank = total + blank_lp[:, None]
    stay_label = p_label + last_lp
    # Prefix extended by a label; repeating the last label needs a blank in between.
    base = torch.where(same_as_last, p_blank[..., None], total[..., None])
    ext = torch.where(is_blank[:, None, :], _NEG_INF, base + cand_lp[:, None, :])  # (B, W, K)

    # An extension may reproduce another live beam's prefix (parent + its last label): fold it
    # into that beam. Prefixes are distinct, so each child has at most one parent.
    used = int(prefix_len.max())  # positions beyond the longest prefix are padding everywhere
    own = tokens[..., :used]
    parent = torch.where(positions[:used] == (prefix_len - 1)[..., None], _PAD, own)
    is_child = ((prefix_len[:, None, :] == prefix_len[:, :, None] + 1)
                & (parent[:, None, :, :] == own[:, :, None, :]).all(dim=-1)
                & alive[:, None, :] & alive[:, :, None])  # (B, W parent, W child)
    fold = is_child.any(dim=1) & same_as_last.any(dim=2)  # (B, W child)
    slot = (is_child.int().argmax(dim=1) * k + same_as_last.int().argmax(dim=2)).clamp(max=width * k - 1)
    ext = ext.reshape(batch, width * k)
    folded = torch.where(fold, ext.gather(1, slot), _NEG_INF)
    stay_label = torch.logaddexp(stay_label, folded)
    # scatter_add, not scatter: unfolded children may share a slot with a folded one.
    hits = torch.zeros_like(ext, dtype=torch.int).scatter_add(1, slot, fold.int())
    ext = torch.where(hits > 0, _NEG_INF, ext)

    scores = torch.cat([torch.logaddexp(stay_blank, stay_label), ext], dim=1)
    if fusion is None:
        chosen = scores.topk(width, dim=1).indices  # (B, W)
    else:  # rank by the fused score; the beams keep pure CTC probabilities
        ranking, ext_terms, lm_words = fusion.ranking_scores(scores, cand_tok, k)
        chosen = ranking.topk(width, dim=1).indices
    extended = chosen >= width
    src = torch.where(extended, (chosen - width) // k, chosen)
    new_tok = cand_tok.gather(1, ((chosen - width) % k).clamp(min=0))

    src_len = prefix_len.gather(1, src)
    new_tokens = tokens.gather(1, src[..., None].expand_as(tokens))
    write = extended[..., None] & (positions == src_len[..., None])
    new_tokens = torch.where(write, new_tok[..., None], new_tokens)
    stay_idx = chosen.clamp(max=width - 1)
    new_blank = torch.where(extended, _NEG_INF, stay_blank.gather(1, stay_idx))
    new_label = torch.where(extended, scores.gather(1, chosen), stay_label.gather(1, stay_idx))
    new_last = torch.where(extended, new_tok, last.gather(1, src))
    if fusion is None:
        return new_tokens, src_len + extended.long(), new_last, new_blank, new_label
    ext_idx = (chosen - width).clamp(min=0)
    new_score = torch.where(extended, ext_terms.gather(1, ext_idx), fusion.score.gather(1, stay_idx))
    history = fusion.history.gather(1, src[..., None].expand_as(fusion.history))
    new_word = lm_words.gather(1, ext_idx)
    new_history = torch.where(extended[..., None], fusion.lm.advance(history, new_word), history)
    return new_tokens, src_len + extended.long(), new_last, new_blank, new_label, new_score, new_history


def reference_prefix_beam_search(log_probs: Sequence[Sequence[float]], beam_width: int = 10,
                                 top_k: int = 40, blank_id: int = 0, lm: NGramLM | None = None,
                                 words: Sequence[str | None] = (), lm_weight: float = 0.0,
                                 word_bonus: float = 0.0) -> tuple[list[int], float]:
    """Classic dict-based prefix beam search of one (T, C) sequence; slow, for tests and benchmarks.

    With `lm` (an ARPA model scored by its own dict lookups) and `words` (class -> gloss), prefixes
    are ranked by the fused score, as ctc_prefix_beam_search ranks them.
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
        beams = {prefix: (p_b, p_nb) for prefix, (p_b, p_nb) in ranked[:beam_width]}

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
