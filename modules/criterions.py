"""Losses: per-sample CTC, sequence distillation (SeqKD), normalised as the original, the total of
a model's loss terms, and which samples CTC cannot align (too few output steps for their glosses)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modules.tconv import output_lengths


def total_loss(terms: Mapping[str, Tensor]) -> Tensor:
    """The training loss: the sum of a model's `loss_terms` (scalars)."""
    if not terms:
        raise ValueError("the model's loss_terms returned no terms: nothing to train")
    return torch.stack(list(terms.values())).sum()


def ctc_per_sample(logits: Tensor, labels: Tensor, lengths: Tensor, label_lengths: Tensor,
                   blank: int = 0) -> Tensor:
    """CTC loss of every sample (B,) for (T, B, C) logits and concatenated labels (not averaged)."""
    log_probs = logits.float().log_softmax(-1)
    # CPU int32 targets/lengths, as the original: lets cuDNN's CTC run when on a GPU.
    return F.ctc_loss(log_probs, labels.cpu().int(), lengths.cpu().int(), label_lengths.cpu().int(),
                      blank=blank, reduction="none", zero_infinity=False)


def ctc_min_steps(label: Tensor, label_len: Tensor) -> list[int]:
    """Output steps CTC needs per sample: one per gloss plus a blank between repeated glosses."""
    flat, out, start = label.detach().cpu().tolist(), [], 0
    for n in label_len.detach().cpu().tolist():
        glosses = flat[start:start + n]
        start += n
        out.append(n + sum(a == b for a, b in zip(glosses, glosses[1:])))
    return out


def unalignable(video_len: Tensor, label: Tensor, label_len: Tensor,
                kernel_sizes: Sequence[str]) -> list[tuple[int, int, int]]:
    """(index, output steps, steps needed) of each sample too short for CTC to align its glosses."""
    steps = output_lengths(video_len.detach().cpu(), kernel_sizes).tolist()
    return [(i, s, need) for i, (s, need) in enumerate(zip(steps, ctc_min_steps(label, label_len)))
            if s < need]


class SeqKD(nn.Module):
    """KL(teacher || student) of temperature-softened (T, B, C) logits, times temperature^2.

    Averaged over all T*B frames of the padded batch (KLDivLoss 'batchmean' on the flattened
    frames), padding included, exactly as the published recipe trains.
    """

    def __init__(self, temperature: float = 8.0) -> None:
        super().__init__()
        self.T = temperature

    def forward(self, prediction_logits: Tensor, ref_logits: Tensor, use_blank: bool = True) -> Tensor:
        """Distillation loss; `use_blank=False` drops class 0 from both distributions."""
        start = 0 if use_blank else 1
        classes = ref_logits.shape[2] - start
        student = F.log_softmax(prediction_logits[:, :, start:].float() / self.T, dim=-1)
        teacher = F.softmax(ref_logits[:, :, start:].float() / self.T, dim=-1)
        kl = F.kl_div(student.reshape(-1, classes), teacher.reshape(-1, classes),
                      reduction="batchmean")
        return kl * self.T * self.T
