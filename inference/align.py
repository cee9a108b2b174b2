"""CTC alignment of a decoded sentence: which output steps (and input frames) each gloss spans."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor


def forced_align(log_probs: Tensor, targets: Sequence[int], blank: int = 0) -> list[int]:
    """Viterbi CTC alignment: per step the index of the target it emits, or -1 for a blank step.

    log_probs is (T, C). The best path among those that collapse to `targets` is returned; ties
    prefer staying in the current state, so spans are as compact as the scores allow.
    """
    lp = log_probs.detach().float().cpu()
    steps, n = lp.shape[0], len(targets)
    if n == 0:
        return [-1] * steps
    states = [blank] + [s for t in targets for s in (int(t), blank)]  # blank, l1, blank, l2, ..., blank
    num_states = len(states)
    emit = lp[:, states]  # (T, S)
    neg = torch.tensor(float("-inf"))
    score = torch.full((num_states,), float("-inf"))
    score[0] = emit[0, 0]
    score[1] = emit[0, 1]
    back = torch.zeros((steps, num_states), dtype=torch.long)
    # A state may skip the blank before it only when its label differs from the one two states back.
    label = torch.tensor(states)
    can_skip = torch.zeros(num_states, dtype=torch.bool)
    can_skip[2:] = (label[2:] != blank) & (label[2:] != label[:-2])
    for t in range(1, steps):
        stay = score
        step1 = torch.cat([neg[None], score[:-1]])
        step2 = torch.where(can_skip, torch.cat([neg[None].expand(2), score[:-2]]), neg)
        choices = torch.stack([stay, step1, step2])  # (3, S)
        best, arg = choices.max(dim=0)  # max returns the first maximum: 'stay' wins ties
        score = best + emit[t]
        back[t] = torch.arange(num_states) - arg
    final = [num_states - 1, num_states - 2]
    end = max(final, key=lambda s: float(score[s]))
    if not torch.isfinite(score[end]):
        raise ValueError(f"{n} glosses cannot be aligned to {steps} output steps (CTC needs at least "
                         f"one step per gloss plus one between repeats)")
    path = [0] * steps
    state = end
    for t in range(steps - 1, -1, -1):
        path[t] = state
        state = int(back[t, state])
    return [(s - 1) // 2 if s % 2 == 1 else -1 for s in path]


def gloss_step_spans(alignment: Sequence[int], num_glosses: int) -> list[tuple[int, int]]:
    """(first, last) output step of each gloss in a forced alignment."""
    spans: list[list[int]] = [[-1, -1] for _ in range(num_glosses)]
    for step, k in enumerate(alignment):
        if k >= 0:
            if spans[k][0] < 0:
                spans[k][0] = step
            spans[k][1] = step
    if any(s[0] < 0 for s in spans):
        raise ValueError("alignment leaves a gloss without any output step")
    return [(a, b) for a, b in spans]


def steps_to_frames(first: int, last: int, stride: int, num_frames: int) -> tuple[int, int]:
    """Input frames covered by output steps first..last: step t is frames [t*stride, (t+1)*stride)."""
    start = min(first * stride, num_frames - 1)
    end = min((last + 1) * stride - 1, num_frames - 1)
    return start, end


@dataclass
class Recognition:
    """A decoded sentence with its CTC alignment on the output steps."""

    glosses: list[str]
    class_indices: list[int]
    step_spans: list[tuple[int, int]]
    log_probs: Tensor  # (T', C) log-softmax of the sequence logits, valid steps only


def align_sentence(logits: Tensor, glosses: Sequence[str], gloss_dict: Mapping) -> Recognition:
    """Forced-align decoded glosses to (T', C) logits: each gloss gets the steps of its best path."""
    log_probs = logits.detach().float().log_softmax(-1).cpu()
    indices = [int(gloss_dict[g][0]) for g in glosses]
    alignment = forced_align(log_probs, indices, blank=0)
    spans = gloss_step_spans(alignment, len(indices))
    return Recognition(list(glosses), indices, spans, log_probs)


