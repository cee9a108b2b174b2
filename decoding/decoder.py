"""CTC decoding of network outputs into gloss sentences: greedy ("max") or prefix beam search ("beam").

Same output as the original ctcdecode-based ``Decode`` but in plain PyTorch: it runs on the device
where the logits already are, needs no compiled extension, and prunes each frame to its ``top_k``
most probable tokens exactly as ctcdecode's default ``cutoff_top_n=40``. With a gloss language
model (an ARPA file) the beam search is LM-fused: score = log P_ctc + lm_weight * ln P_lm +
word_bonus * #glosses (decoding.beam_search). ``token_min_logp`` / ``beam_prune_logp`` opt in to
pyctcdecode's pruning (faster, not exact). ``Decoder(cfg, gloss_dict, read_lm(cfg))`` decodes as
the ``decode:`` section ``cfg`` says; ``SplitDecoder`` decodes a whole evaluation split in a few
large calls.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from itertools import groupby

import torch
from torch import Tensor

from decoding.arpa import read_arpa
from decoding.beam_search import ctc_prefix_beam_search
from decoding.config import DecodeConfig, check_lm_mode
from decoding.greedy import best_path
from decoding.lm import NGramLM, TokenLM
from utils.errors import ConfigError

Sentence = list[tuple[str, int]]


class Decoder:
    """Turns (B, T, C) logits or probabilities into per-sample lists of (gloss, position).

    `cfg` says how (its checks ran when it was made); `gloss_dict` is the vocabulary (gloss ->
    [index, count], gloss_dict.npy), `lm` the gloss LM to fuse (read_lm(cfg) reads cfg.lm_path;
    None: no LM). `num_classes` defaults to the vocabulary plus the blank.
    """

    def __init__(self, cfg: DecodeConfig, gloss_dict: Mapping[str, Sequence[int]],
                 lm: NGramLM | None = None, *, num_classes: int | None = None, blank_id: int = 0,
                 top_k: int = 40) -> None:
        if not isinstance(gloss_dict, Mapping):
            raise TypeError("gloss_dict must be a dict gloss -> [index, count] (gloss_dict.npy), "
                            f"got {type(gloss_dict).__name__}")
        num_classes = len(gloss_dict) + 1 if num_classes is None else num_classes
        if not 0 <= blank_id < num_classes:
            raise ValueError(f"blank_id={blank_id} is outside range(num_classes={num_classes})")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if lm is not None:
            check_lm_mode(cfg.mode, "a language model")
        self.cfg = cfg
        self.i2g_dict = _index_to_gloss(gloss_dict, num_classes, blank_id)
        self.g2i_dict = {gloss: index for index, gloss in self.i2g_dict.items()}
        self.num_classes = num_classes
        self.blank_id = blank_id
        self.top_k = top_k
        self.lm = lm
        self._token_lms: dict[torch.device, TokenLM] = {}  # LM tables per device, built on first use
        self.seconds = 0.0  # wall time spent in decode(), summed (results come back to the host)

    @property
    def pruned(self) -> bool:
        """Whether the beam search prunes beyond top_k (pyctcdecode's options; not exact)."""
        return self.cfg.token_min_logp is not None or self.cfg.beam_prune_logp is not None

    def token_lm(self, device: torch.device) -> TokenLM | None:
        """The LM as lookup tables on `device` (None without an LM)."""
        if self.lm is None:
            return None
        if device not in self._token_lms:
            words = [self.i2g_dict.get(index) for index in range(self.num_classes)]
            self._token_lms[device] = TokenLM(self.lm, words, device)
        return self._token_lms[device]

    def decode(self, nn_output: Tensor, vid_lgt: Tensor | Sequence[int], batch_first: bool = True,
               probs: bool = False) -> list[Sentence]:
        """Decode logits (probabilities if `probs`) of shape (B,T,C), or (T,B,C) if not batch_first."""
        if nn_output.dim() != 3:
            raise ValueError("nn_output must be 3-D (batch, time, classes), "
                             f"got {tuple(nn_output.shape)}")
        if not batch_first:
            nn_output = nn_output.transpose(0, 1)
        if nn_output.shape[-1] != self.num_classes:
            raise ValueError(f"nn_output has {nn_output.shape[-1]} classes, the decoder was built "
                             f"for num_classes={self.num_classes}")
        start = time.perf_counter()
        lengths = _checked_lengths(vid_lgt, nn_output.shape[0], nn_output.shape[1], nn_output.device)
        if self.cfg.mode == "max":
            labels = best_path(nn_output, lengths, self.blank_id)
        else:
            labels = self._beam_search(nn_output, lengths, probs)
        # As the original: equal glosses separated only by blanks ("A _ A") decode to one.
        sentences = [self._to_sentence(_merge_repeats(row)) for row in labels]
        self.seconds += time.perf_counter() - start
        return sentences

    @torch.no_grad()
    def _beam_search(self, nn_output: Tensor, lengths: Tensor, probs: bool) -> list[list[int]]:
        """The best prefix of each sample of (B,T,C) scores."""
        # Normalised inside the search, for the frames within the lengths only. Probabilities
        # of 0 give -inf, which the search treats as an impossible token.
        transform = _log_of_probs if probs else _log_softmax
        cfg = self.cfg
        result = ctc_prefix_beam_search(nn_output, lengths, cfg.beam_width, self.top_k,
                                        self.blank_id, self.token_lm(nn_output.device),
                                        cfg.lm_weight, cfg.word_bonus, cfg.token_min_logp,
                                        cfg.beam_prune_logp, transform)
        return [row[:n] for row, n in zip(result.tokens[:, 0].tolist(), result.lengths[:, 0].tolist())]

    def _to_sentence(self, labels: Sequence[int]) -> Sentence:
        """Map class indices to (gloss, position) pairs."""
        try:
            return [(self.i2g_dict[label], position) for position, label in enumerate(labels)]
        except KeyError as err:
            raise KeyError(f"class index {err.args[0]} has no gloss in gloss_dict; num_classes="
                           f"{self.num_classes} must be len(gloss_dict) + 1") from None


def read_lm(cfg: DecodeConfig) -> NGramLM | None:
    """The gloss LM cfg.lm_path names, read once (None without one); errors name decode.lm_path."""
    if not cfg.lm_path:
        return None
    try:
        return read_arpa(cfg.lm_path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"decode.lm_path / --lm-path: {exc}") from exc


def _log_softmax(scores: Tensor, out: Tensor) -> None:
    """Log-probabilities of (N, C) float logits, into `out`."""
    torch.log_softmax(scores, -1, out=out)


def _log_of_probs(probs: Tensor, out: Tensor) -> None:
    """Log of (N, C) float probabilities (negatives clamped to 0, whose log is -inf), into `out`."""
    torch.log(probs.clamp(min=0), out=out)


def _merge_repeats(labels: Sequence[int]) -> list[int]:
    """Collapse runs of equal labels."""
    return [label for label, _ in groupby(labels)]


def _index_to_gloss(gloss_dict: Mapping[str, Sequence[int]], num_classes: int,
                    blank_id: int) -> dict[int, str]:
    """Invert gloss -> [index, count], checking indices fit the classifier."""
    i2g = {}
    for gloss, value in gloss_dict.items():
        try:
            index = int(value[0])
        except (TypeError, IndexError, ValueError):
            raise ValueError(f"gloss_dict[{gloss!r}] = {value!r}: expected [index, count]") from None
        if not 0 <= index < num_classes or index == blank_id:
            raise ValueError(f"gloss_dict[{gloss!r}] has index {index}, outside 1..{num_classes - 1} or "
                             f"equal to the blank {blank_id}; rebuild gloss_dict.npy or fix num_classes")
        if index in i2g:
            raise ValueError(f"glosses {i2g[index]!r} and {gloss!r} share index {index} in gloss_dict")
        i2g[index] = gloss
    return i2g


def _checked_lengths(vid_lgt: Tensor | Sequence[int], batch: int, max_time: int,
                     device: torch.device) -> Tensor:
    """Lengths as a long tensor on `device`, each within 0..max_time."""
    lengths = torch.as_tensor(vid_lgt).reshape(-1)
    if lengths.is_floating_point() and not torch.equal(lengths, lengths.round()):
        raise ValueError(f"vid_lgt must hold whole frame counts, got {lengths.tolist()}")
    lengths = lengths.to(device=device, dtype=torch.long)
    if lengths.numel() != batch:
        raise ValueError(f"vid_lgt has {lengths.numel()} entries for a batch of {batch}")
    if bool((lengths < 0).any()) or bool((lengths > max_time).any()):
        raise ValueError(f"vid_lgt {lengths.tolist()} must lie within 0..{max_time} (the time axis)")
    return lengths


class SplitDecoder:
    """Collects per-video logits of a split's outputs and decodes them together in few large calls.

    `add` keeps each batch's logits where they are (the device) and decodes once `chunk_size`
    videos are waiting; `finish` decodes the rest. The `outputs` of a video (the BiLSTM's and the
    temporal convolution's logits) share those calls: the search costs about the same per time
    step for twice the samples, so one call for both halves the steps. Per-sample results equal
    per-batch decoding: the search treats every sample independently and ignores frames beyond
    its length.
    """

    def __init__(self, decoder: Decoder, chunk_size: int = 1024, keep_logits: bool = False,
                 outputs: Sequence[str] = ("sequence",)) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if not outputs or len(set(outputs)) != len(outputs):
            raise ValueError(f"outputs must be distinct names, got {list(outputs)}")
        self.decoder = decoder
        self.chunk_size = chunk_size
        self.keep_logits = keep_logits
        self.outputs = tuple(outputs)
        self.kept: list[Tensor] = []   # (T_i, C) float32 CPU logits of outputs[0], in `add` order
        self.sentences: dict[str, list[Sentence]] = {name: [] for name in self.outputs}
        self._pending: list[tuple[str, Tensor]] = []

    def add(self, logits: Tensor, lengths: Tensor | Sequence[int], batch_first: bool = False,
            output: str | None = None) -> None:
        """Queue a batch of (T, B, C) logits ((B, T, C) if batch_first) of `output` (default the first)."""
        output = self.outputs[0] if output is None else output
        if output not in self.sentences:
            raise ValueError(f"unknown output {output!r}; this decoder collects {list(self.outputs)}")
        if not batch_first:
            logits = logits.transpose(0, 1)
        lengths = _checked_lengths(lengths, logits.shape[0], logits.shape[1], torch.device("cpu"))
        for sample, length in zip(logits, lengths.tolist()):
            self._pending.append((output, sample[:length]))
            if self.keep_logits and output == self.outputs[0]:
                self.kept.append(sample[:length].detach().float().cpu())
        if len(self._pending) >= self.chunk_size * len(self.outputs):
            self._flush()

    def finish(self) -> dict[str, list[Sentence]]:
        """Decode what is still queued; each output's sentences of every added sample, in order."""
        self._flush()
        return self.sentences

    def _flush(self) -> None:
        """Decode the queued samples as one padded batch."""
        if not self._pending:
            return
        samples = [sample for _, sample in self._pending]
        padded = torch.nn.utils.rnn.pad_sequence(samples, batch_first=True)
        decoded = self.decoder.decode(padded, [sample.shape[0] for sample in samples], batch_first=True)
        for (output, _), sentence in zip(self._pending, decoded):
            self.sentences[output].append(sentence)
        self._pending = []
