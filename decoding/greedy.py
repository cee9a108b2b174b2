"""Greedy (best-path) CTC decoding: the most probable class of every frame, runs collapsed, blanks dropped."""
from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def best_path(scores: Tensor, lengths: Tensor, blank_id: int = 0) -> list[list[int]]:
    """Class indices of each sample's best path through (B, T, C) scores, frames beyond `lengths` ignored."""
    index = scores.argmax(dim=2)
    time = torch.arange(index.shape[1], device=index.device)
    changed = torch.ones_like(index, dtype=torch.bool)
    changed[:, 1:] = index[:, 1:] != index[:, :-1]
    keep = changed & (index != blank_id) & (time < lengths.to(index.device)[:, None])
    return [[label for label, kept in zip(row, mask) if kept]
            for row, mask in zip(index.tolist(), keep.tolist())]
