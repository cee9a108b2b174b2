"""A split's saved network outputs (`<split>-logits.pt`): what LM tuning decodes without a forward pass.

File: a torch-saved dict of plain tensors and lists (loads with ``weights_only=True``):
``ids`` (video ids), ``lengths`` (N,) int64, ``logits`` (sum of lengths, C) float32 (the BiLSTM
classifier's raw outputs, videos concatenated in ``ids`` order), ``glosses`` (class index ->
gloss, ``""`` for the blank) and ``blank_id``.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from utils.atomic import atomic_path
from utils.errors import BadFileError, MissingFileError


@dataclass(frozen=True)
class SplitLogits:
    """Per-video logits of a split, padded: logits (N, T, C), lengths (N,), ids, class glosses."""

    ids: list[str]
    logits: Tensor
    lengths: Tensor
    glosses: list[str]
    blank_id: int

    def gloss_dict(self) -> dict[str, list[int]]:
        """gloss -> [index, 0] as decoding.decoder.Decoder expects."""
        return {g: [i, 0] for i, g in enumerate(self.glosses) if i != self.blank_id}


def class_glosses(gloss_dict: Mapping[str, Sequence[int]], num_classes: int, blank_id: int = 0) -> list[str]:
    """Class index -> gloss ('' for the blank)."""
    glosses = [""] * num_classes
    for gloss, value in gloss_dict.items():
        glosses[int(value[0])] = gloss
    glosses[blank_id] = ""
    return glosses


def save_split_logits(path: str | os.PathLike, ids: Sequence[str], logits: Sequence[Tensor],
                      glosses: Sequence[str], blank_id: int = 0) -> None:
    """Write per-video (T_i, C) logits with their ids and the class glosses."""
    if len(ids) != len(logits):
        raise ValueError(f"{len(ids)} ids for {len(logits)} logit sequences")
    payload = {
        "ids": list(ids),
        "lengths": torch.tensor([x.shape[0] for x in logits], dtype=torch.long),
        "logits": torch.cat([x.float().cpu() for x in logits]) if logits else torch.zeros(0, len(glosses)),
        "glosses": list(glosses),
        "blank_id": int(blank_id),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_split_logits(path: str | os.PathLike) -> SplitLogits:
    """Read a `<split>-logits.pt` written by `main.py --phase test`."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} not found: `python main.py --phase test ...` writes "
                               f"<work_dir>/eval/<split>-logits.pt (decode.save_logits)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        ids, lengths, flat = list(data["ids"]), data["lengths"], data["logits"]
        glosses, blank_id = list(data["glosses"]), int(data["blank_id"])
    except (KeyError, TypeError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        # pickles weights_only refuses, truncated archives, files of other tools
        text = " ".join(str(exc).split())[:200]
        raise BadFileError(f"{path} is not a split-logits file of main.py --phase test "
                           f"({type(exc).__name__}: {text}); pass the <split>-logits.pt that "
                           f"`main.py --phase test` wrote") from None
    if (not isinstance(lengths, torch.Tensor) or not isinstance(flat, torch.Tensor) or flat.ndim != 2
            or int(lengths.sum()) != flat.shape[0] or len(ids) != lengths.numel()):
        raise BadFileError(f"{path}: lengths do not match the stored logits")
    pieces = list(flat.split(lengths.tolist())) if len(ids) else []
    padded = (torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True) if pieces
              else torch.zeros(0, 0, len(glosses)))
    return SplitLogits(ids=ids, logits=padded, lengths=lengths, glosses=glosses, blank_id=blank_id)
