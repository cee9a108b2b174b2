"""CTC prefix beam search in plain PyTorch, vectorised over the batch and the beam.

Semantics follow ctcdecode's ``CTCBeamDecoder``: at every frame only the ``top_k`` most probable
tokens (blank included) are considered (ctcdecode's ``cutoff_top_n=40``), prefixes that become
equal are merged by summing their probabilities, and the ``beam_width`` best prefixes survive.
The only Python loop is over time steps; a step works only on the samples whose length it is
within (the batch runs longest first, so they are a leading slice).

Optional pruning as pyctcdecode does it (both off by default, which is the exact search above):
``token_min_logp`` drops a frame's tokens whose log-probability is below it (the frame's best
token is always kept), so that peaky outputs extend each beam by one or two tokens instead of
``top_k``; ``beam_prune_logp`` drops beams whose (fused) score is more than its magnitude below
the best beam's.

Shallow fusion with a gloss n-gram model (``lm``, a ``decoding.lm.TokenLM``): a prefix is ranked by
log P_ctc + lm_weight * ln P_lm(glosses) + word_bonus * len(glosses), the LM term added when the
prefix is extended by a gloss, and ln P_lm(</s> | prefix) added after the last frame, as
ctcdecode and pyctcdecode do. Each class is one gloss, i.e. one LM word. Without ``lm`` the
search is exactly the plain one.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from decoding.config import check_pruning

if TYPE_CHECKING:
    from decoding.lm import TokenLM

_NEG_INF = float("-inf")
_PAD = -1  # token value of unused prefix positions; never a real class index
# Prefix identity: a polynomial hash modulo a prime (products stay far below 2**63); equal hashes
# are only candidates, confirmed by comparing the tokens, so a collision never merges prefixes.
_HASH_MOD = 2_147_483_647
_HASH_MUL = 1_000_003


@dataclass(frozen=True)
class BeamSearchResult:
    """Beams sorted best first: tokens (B, W, T) padded with -1, lengths (B, W), scores (B, W).

    Scores are log P_ctc, or with a language model the fused score (end of sentence included).
    Beams that were never filled or were pruned score -inf.
    """

    tokens: Tensor
    lengths: Tensor
    scores: Tensor

    def best(self, batch_index: int) -> list[int]:
        """Token ids of the most probable prefix of one sample."""
        length = int(self.lengths[batch_index, 0])
        return self.tokens[batch_index, 0, :length].tolist()


@dataclass
class _Beams:
    """State of every beam of every sample; a view of the first `n` samples is again a _Beams."""

    tokens: Tensor       # (B, W, T) prefix tokens, _PAD beyond prefix_len
    prefix_len: Tensor   # (B, W)
    last: Tensor         # (B, W) last token of the prefix (_PAD when empty)
    p_blank: Tensor      # (B, W) log P(prefix, path ends in blank)
    p_label: Tensor      # (B, W) log P(prefix, path ends in its last label)
    key: Tensor          # (B, W) hash of the prefix
    parent_key: Tensor   # (B, W) hash of the prefix without its last token (-1 when empty)
    fused: Tensor | None = None    # (B, W) lm_weight * ln P_lm(prefix) + word_bonus * len(prefix)
    history: Tensor | None = None  # (B, W, order - 1) LM word ids

    def head(self, n: int, columns: int) -> _Beams:
        """Views of the first `n` samples, tokens cut to `columns` positions."""
        sliced = {f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[:n]
                  for f in fields(self)}
        sliced["tokens"] = self.tokens[:n, :, :columns]
        return _Beams(**sliced)

    def assign_head(self, new: _Beams) -> None:
        """Write `new` (a stepped head) into the first samples in place."""
        n, _, columns = new.tokens.shape
        for f in fields(self):
            value = getattr(new, f.name)
            if value is not None:
                target = getattr(self, f.name)
                (target[:n, :, :columns] if f.name == "tokens" else target[:n]).copy_(value)


def ctc_prefix_beam_search(log_probs: Tensor, lengths: Tensor | Sequence[int], beam_width: int = 10,
                           top_k: int = 40, blank_id: int = 0, lm: TokenLM | None = None,
                           lm_weight: float = 0.0, word_bonus: float = 0.0,
                           token_min_logp: float | None = None, beam_prune_logp: float | None = None,
                           transform: Callable[[Tensor, Tensor], None] | None = None) -> BeamSearchResult:
    """Best CTC prefixes of (B, T, C) log-probabilities (frames beyond `lengths` ignored), LM-fused if `lm`.

    `transform(frames, out)` (e.g. log_softmax of logits) writes the log-probabilities of (N, C)
    frames into `out`; it is applied to the frames within the lengths only.
    """
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (batch, time, classes), got shape {tuple(log_probs.shape)}")
    batch, max_time, num_classes = log_probs.shape
    if not 0 <= blank_id < num_classes:
        raise ValueError(f"blank_id={blank_id} is outside the {num_classes} classes of log_probs")
    if beam_width < 1 or top_k < 1:
        raise ValueError(f"beam_width and top_k must be >= 1, got {beam_width} and {top_k}")
    check_pruning(token_min_logp, beam_prune_logp)
    device = log_probs.device
    lengths = torch.as_tensor(lengths).to(device=device, dtype=torch.long).reshape(-1)
    if lengths.numel() != batch or bool(((lengths < 0) | (lengths > max_time)).any()):
        raise ValueError(f"lengths {lengths.tolist()} must give one value in 0..{max_time} per sample")
    width, k = beam_width, min(top_k, num_classes)
    if lm is not None:
        if lm.device != device:
            raise ValueError(f"the language model tables are on {lm.device}, log_probs on {device}")
        if lm.class_to_word.numel() != num_classes:
            raise ValueError(f"the language model maps {lm.class_to_word.numel()} classes, "
                             f"log_probs has {num_classes}")

    frame_lp, frame_tok, kept = _frame_candidates(log_probs, lengths, k, token_min_logp, transform)
    # Longest first: the samples still running at frame t are then the first running[t].
    order = lengths.argsort(descending=True, stable=True)
    lengths, frame_lp, frame_tok, kept = lengths[order], frame_lp[order], frame_tok[order], kept[order]
    running = (lengths[:, None] > torch.arange(max_time, device=device)).sum(0).tolist()
    widths = kept.amax(0).tolist() if batch else []  # tokens a frame needs; 0 beyond every length

    beams = _initial_beams(batch, width, max(max_time, 1), device, lm)
    # With pruned tokens there are few extensions: scoring them all beats the two-pass bound.
    fusion = None if lm is None else _Fusion(lm, lm_weight, word_bonus, token_min_logp is None)
    for t in range(max_time):
        n = running[t]
        if n == 0:
            break
        used = int(beams.prefix_len[:n].max())  # positions beyond the longest prefix are padding
        head = beams.head(n, min(used + 1, beams.tokens.shape[-1]))
        cols = widths[t]
        beams.assign_head(_beam_step(frame_lp[:n, t, :cols], frame_tok[:n, t, :cols], head, used,
                                     width, blank_id, fusion, beam_prune_logp))

    scores = torch.logaddexp(beams.p_blank, beams.p_label)
    if fusion is not None:
        eos = torch.full_like(beams.prefix_len, lm.eos)[..., None]
        scores = scores + beams.fused + lm_weight * lm.log_prob(beams.history, eos)[..., 0]
    unsort = order.argsort()
    scores, tokens, prefix_len = scores[unsort], beams.tokens[unsort], beams.prefix_len[unsort]
    ranked = scores.argsort(dim=1, descending=True, stable=True)
    tokens = tokens.gather(1, ranked[..., None].expand_as(tokens))[..., :max_time]
    return BeamSearchResult(tokens=tokens, lengths=prefix_len.gather(1, ranked),
                            scores=scores.gather(1, ranked))


def _frame_candidates(log_probs: Tensor, lengths: Tensor, k: int, token_min_logp: float | None,
                      transform: Callable[[Tensor, Tensor], None] | None) -> tuple[Tensor, Tensor, Tensor]:
    """Each frame's candidate tokens, best first: log-probs (B, T, k) (-inf where pruned), tokens,
    and how many are kept (B, T) (0 beyond the lengths); one top-k call over all valid frames."""
    batch, max_time, _ = log_probs.shape
    device = log_probs.device
    valid = torch.arange(max_time, device=device) < lengths[:, None]
    # Each sample's valid frames written straight into one (N, C) block: no padded frame is
    # normalised and no extra copy is made.
    rows = torch.empty(int(lengths.sum()), log_probs.shape[-1], device=device)
    offset = 0
    for sample, length in zip(log_probs, lengths.tolist()):
        if length:
            frames = sample[:length].float()
            if transform is None:
                rows[offset:offset + length] = frames
            else:
                transform(frames, rows[offset:offset + length])
            offset += length
    frame_lp = torch.zeros(batch, max_time, k, device=device)
    frame_tok = torch.zeros(batch, max_time, k, dtype=torch.long, device=device)
    kept = torch.zeros(batch, max_time, dtype=torch.long, device=device)
    if token_min_logp is None:
        frame_lp[valid], frame_tok[valid] = rows.topk(k, dim=1)
        kept[valid] = k
        return frame_lp, frame_tok, kept
    # A few tokens per frame first; only frames where all of them pass the threshold need all k.
    few = min(k, 4)
    lp = torch.full((rows.shape[0], k), _NEG_INF, device=device)
    tok = torch.zeros(rows.shape[0], k, dtype=torch.long, device=device)
    lp[:, :few], tok[:, :few] = rows.topk(few, dim=1)
    if few < k:
        more = (lp[:, few - 1] >= token_min_logp).nonzero()[:, 0]
        if more.numel():
            lp[more], tok[more] = rows[more].topk(k, dim=1)
    keep = lp >= token_min_logp
    keep[:, 0] = True  # the frame's best token, whatever its probability (as pyctcdecode)
    frame_lp[valid] = torch.where(keep, lp, _NEG_INF)
    frame_tok[valid] = tok
    kept[valid] = keep.sum(dim=1)  # best first, so the kept tokens are the leading ones
    return frame_lp, frame_tok, kept


def _initial_beams(batch: int, width: int, positions: int, device: torch.device,
                   lm: TokenLM | None) -> _Beams:
    """Only beam 0 (the empty prefix, probability 1 of ending in blank) starts alive."""
    p_blank = torch.full((batch, width), _NEG_INF, device=device)
    p_blank[:, 0] = 0.0
    beams = _Beams(tokens=torch.full((batch, width, positions), _PAD, dtype=torch.long, device=device),
                   prefix_len=torch.zeros(batch, width, dtype=torch.long, device=device),
                   last=torch.full((batch, width), _PAD, dtype=torch.long, device=device),
                   p_blank=p_blank, p_label=torch.full((batch, width), _NEG_INF, device=device),
                   key=torch.zeros(batch, width, dtype=torch.long, device=device),
                   parent_key=torch.full((batch, width), -1, dtype=torch.long, device=device))
    if lm is not None:
        beams.fused = torch.zeros(batch, width, device=device)
        beams.history = lm.initial_history(batch, width).to(device)
    return beams


@dataclass
class _Fusion:
    """Shallow-fusion settings: the LM tables, lm_weight (alpha) and word_bonus (beta)."""

    lm: TokenLM
    weight: float
    bonus: float
    bounded: bool = True  # look up only extensions that can enter the beam (see ranking_scores)

    def ranking_scores(self, beams: _Beams, scores: Tensor, cand_tok: Tensor,
                       k: int) -> tuple[Tensor, Tensor, Tensor]:
        """Fused (B, W + W*K) ranking scores of stays and extensions; the extensions' fused terms
        (B, W*K) and LM word ids.

        LM lookups are made only for extensions that can enter the beam: with lm_weight >= 0 an
        extension scores at most its CTC score + the prefix's fused terms + max(word_bonus, 0).
        The W best extensions by that bound are scored first; the W-th best of them and of the
        stays bounds the W-th best candidate from below, and only extensions whose bound reaches
        it are scored too. The rest get -inf, which selects the same beams.
        """
        batch, width = beams.fused.shape
        words = self.lm.word_ids(cand_tok)[:, None, :].expand(-1, width, -1).reshape(batch, width * k)
        stays = scores[:, :width] + beams.fused
        base = beams.fused.repeat_interleave(k, dim=1)  # (B, W*K): the parent beam's fused terms
        ext = scores[:, width:]
        terms = torch.full_like(base, _NEG_INF)
        if self.weight < 0 or not self.bounded:  # score every live extension
            self._score(terms, ext > _NEG_INF, base, words, beams.history, k)
        else:
            bound = ext + base + max(self.bonus, 0.0)
            first = torch.zeros_like(bound, dtype=torch.bool).scatter_(
                1, bound.topk(min(width, bound.shape[1]), dim=1).indices, True) & (ext > _NEG_INF)
            self._score(terms, first, base, words, beams.history, k)
            known = torch.cat([stays, ext + terms], dim=1)
            threshold = known.topk(width, dim=1).values[:, -1:]
            self._score(terms, (bound >= threshold) & ~first & (ext > _NEG_INF), base, words,
                        beams.history, k)
        return torch.cat([stays, ext + terms], dim=1), terms, words

    def _score(self, terms: Tensor, need: Tensor, base: Tensor, words: Tensor, history: Tensor,
               k: int) -> None:
        """Fill `terms` where `need`: parent's fused terms + lm_weight * ln P_lm + word_bonus."""
        rows, cols = need.nonzero(as_tuple=True)
        if rows.numel():
            lp = self.lm.log_prob(history[rows, cols // k], words[rows, cols][:, None])[:, 0]
            terms[rows, cols] = base[rows, cols] + (self.weight * lp + self.bonus)


def _children(beams: _Beams, used: int, alive: Tensor) -> Tensor:
    """(B, W parent, W child): the child's prefix is the parent's plus one token (both alive)."""
    # Dead beams get keys no hash takes; equal lengths are implied by equal tokens below.
    key = torch.where(alive, beams.key, -2)
    parent_key = torch.where(alive, beams.parent_key, -3)
    candidate = parent_key[:, None, :] == key[:, :, None]
    rows, parent, child = candidate.nonzero(as_tuple=True)
    if rows.numel():  # equal hashes: confirm on the tokens (padding included, so lengths too)
        own = beams.tokens[..., :used]
        child_tokens = own[rows, child]
        position = torch.arange(used, device=own.device)
        child_tokens = torch.where(position == (beams.prefix_len[rows, child] - 1)[:, None], _PAD,
                                   child_tokens)
        candidate[rows, parent, child] = (child_tokens == own[rows, parent]).all(dim=1)
    return candidate


def _beam_step(cand_lp: Tensor, cand_tok: Tensor, beams: _Beams, used: int, width: int,
               blank_id: int, fusion: _Fusion | None = None,
               beam_prune_logp: float | None = None) -> _Beams:
    """Advance every beam by one frame: extend, merge equal prefixes, keep the `width` best."""
    batch, k = cand_lp.shape  # cand_lp, cand_tok: (B, K) this frame's candidate tokens
    p_blank, p_label, last = beams.p_blank, beams.p_label, beams.last
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
    is_child = _children(beams, used, alive)  # (B, W parent, W child)
    fold = is_child.any(dim=1) & same_as_last.any(dim=2)  # (B, W child)
    # At most one match each (a frame's tokens are distinct, a child has one parent): the sums
    # are the matching position and the parent beam (0 without one, as argmax would give).
    index = torch.arange(max(k, width), dtype=torch.int, device=cand_tok.device)
    match = (same_as_last.int() * index[:k]).sum(dim=2)
    parent = (is_child.int() * index[:width, None]).sum(dim=1)
    slot = (parent * k + match).clamp(max=width * k - 1)
    ext = ext.reshape(batch, width * k)
    folded = torch.where(fold, ext.gather(1, slot), _NEG_INF)
    stay_label = torch.logaddexp(stay_label, folded)
    # scatter_add, not scatter: unfolded children may share a slot with a folded one.
    hits = torch.zeros_like(ext, dtype=torch.int).scatter_add(1, slot, fold.int())
    ext = torch.where(hits > 0, _NEG_INF, ext)

    scores = torch.cat([torch.logaddexp(stay_blank, stay_label), ext], dim=1)
    if fusion is None:
        ranking = scores
    else:  # rank by the fused score; the beams keep pure CTC probabilities
        ranking, ext_terms, lm_words = fusion.ranking_scores(beams, scores, cand_tok, k)
    top, chosen = ranking.topk(width, dim=1)  # (B, W)
    extended = chosen >= width
    src = torch.where(extended, (chosen - width) // k, chosen)
    new_tok = cand_tok.gather(1, ((chosen - width) % k).clamp(min=0))

    src_len = beams.prefix_len.gather(1, src)
    tokens = beams.tokens.gather(1, src[..., None].expand_as(beams.tokens))
    position = torch.arange(tokens.shape[-1], device=tokens.device)
    tokens = torch.where(extended[..., None] & (position == src_len[..., None]), new_tok[..., None], tokens)
    stay_idx = chosen.clamp(max=width - 1)
    new_blank = torch.where(extended, _NEG_INF, stay_blank.gather(1, stay_idx))
    new_label = torch.where(extended, scores.gather(1, chosen), stay_label.gather(1, stay_idx))
    if beam_prune_logp is not None:  # beams far below the best are dropped, as pyctcdecode does
        dropped = top < top[:, :1] + beam_prune_logp
        new_blank = new_blank.masked_fill(dropped, _NEG_INF)
        new_label = new_label.masked_fill(dropped, _NEG_INF)
    src_key = beams.key.gather(1, src)
    stepped = _Beams(tokens=tokens, prefix_len=src_len + extended.long(),
                     last=torch.where(extended, new_tok, last.gather(1, src)),
                     p_blank=new_blank, p_label=new_label,
                     key=torch.where(extended, (src_key * _HASH_MUL + new_tok + 1) % _HASH_MOD, src_key),
                     parent_key=torch.where(extended, src_key, beams.parent_key.gather(1, src)))
    if fusion is None:
        return stepped
    ext_idx = (chosen - width).clamp(min=0)
    history = beams.history.gather(1, src[..., None].expand_as(beams.history))
    new_word = lm_words.gather(1, ext_idx)
    return replace(stepped,
                   fused=torch.where(extended, ext_terms.gather(1, ext_idx), beams.fused.gather(1, stay_idx)),
                   history=torch.where(extended[..., None], fusion.lm.advance(history, new_word), history))
