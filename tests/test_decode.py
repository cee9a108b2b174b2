"""CTC decoding: vectorised prefix beam search against exhaustive and dict-based references."""
from __future__ import annotations

import itertools
from itertools import groupby

import pytest
import torch

from utils.beam_search import ctc_prefix_beam_search, reference_prefix_beam_search
from utils.decode import Decode


def _collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    """CTC many-to-one map: merge repeats, then drop blanks."""
    return tuple(label for label, _ in groupby(path) if label != blank)


def _exhaustive(log_probs: torch.Tensor, blank: int = 0) -> dict[tuple[int, ...], float]:
    """log P(labelling) for every labelling, summing all alignments (tiny T and C only)."""
    steps, classes = log_probs.shape
    table = log_probs.tolist()
    per_label: dict[tuple[int, ...], list[float]] = {}
    for path in itertools.product(range(classes), repeat=steps):
        score = sum(table[t][c] for t, c in enumerate(path))
        per_label.setdefault(_collapse(path, blank), []).append(score)
    return {label: torch.tensor(scores, dtype=torch.float64).logsumexp(0).item()
            for label, scores in per_label.items()}


def _gloss_dict(num_glosses: int) -> dict[str, list[int]]:
    return {f"G{i}": [i, 1] for i in range(1, num_glosses + 1)}


@pytest.mark.parametrize("blank", [0, 2])
def test_wide_beam_finds_most_probable_labelling(blank: int) -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        steps = int(torch.randint(1, 6, (1,), generator=gen))
        classes = int(torch.randint(2, 5, (1,), generator=gen))
        if blank >= classes:
            continue
        log_probs = (2 * torch.randn(1, steps, classes, generator=gen)).log_softmax(-1)
        exact = _exhaustive(log_probs[0].double(), blank)
        best = max(exact, key=exact.get)
        prefixes = sum((classes - 1) ** n for n in range(steps + 1))  # beam never has to drop one
        result = ctc_prefix_beam_search(log_probs, torch.tensor([steps]), beam_width=prefixes,
                                        top_k=classes, blank_id=blank)
        assert tuple(result.best(0)) == best
        torch.testing.assert_close(result.scores[0, 0].item(), exact[best], atol=1e-4, rtol=0)
        # Every surviving beam carries the exact probability of its labelling.
        for w in range(result.scores.shape[1]):
            if result.scores[0, w] > float("-inf"):
                label = tuple(result.tokens[0, w, :result.lengths[0, w]].tolist())
                torch.testing.assert_close(result.scores[0, w].item(), exact[label], atol=1e-4, rtol=0)


def test_narrow_beam_and_top_k_match_dict_reference_with_ragged_batch() -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        batch, steps, classes = 4, int(torch.randint(1, 16, (1,), generator=gen)), 9
        log_probs = (3 * torch.randn(batch, steps, classes, generator=gen)).log_softmax(-1)
        lengths = torch.randint(0, steps + 1, (batch,), generator=gen)
        result = ctc_prefix_beam_search(log_probs, lengths, beam_width=3, top_k=5)
        for b in range(batch):
            ref, score = reference_prefix_beam_search(log_probs[b, :lengths[b]].tolist(), 3, 5)
            assert result.best(b) == ref
            torch.testing.assert_close(result.scores[b, 0].item(), score, atol=1e-3, rtol=0)


def test_batch_padding_does_not_change_results() -> None:
    gen = torch.Generator().manual_seed(2)
    log_probs = torch.randn(3, 12, 7, generator=gen).log_softmax(-1)
    lengths = torch.tensor([12, 5, 1])
    together = ctc_prefix_beam_search(log_probs, lengths, beam_width=4, top_k=7)
    for b in range(3):
        alone = ctc_prefix_beam_search(log_probs[b:b + 1, :lengths[b]], lengths[b:b + 1], 4, 7)
        assert together.best(b) == alone.best(0)
        torch.testing.assert_close(together.scores[b], alone.scores[0])


def _plain_greedy(logits: torch.Tensor, length: int, blank: int) -> list[int]:
    """Argmax, merge repeats, drop blanks, merge again (the original MaxDecode)."""
    path = logits[:length].argmax(-1).tolist()
    no_blank = [label for label, _ in groupby(path) if label != blank]
    return [label for label, _ in groupby(no_blank)]


@pytest.mark.parametrize("blank", [0, 3])
def test_greedy_matches_plain_reference(blank: int) -> None:
    gen = torch.Generator().manual_seed(3)
    num_glosses = 5
    gloss_dict = {f"G{i}": [i, 1] for i in range(num_glosses + 1) if i != blank}
    decoder = Decode(gloss_dict, num_glosses + 1, "max", blank_id=blank)
    logits = torch.randn(5, 20, num_glosses + 1, generator=gen)
    logits[..., blank] += 1.0  # plenty of blanks, so "A _ A" cases occur
    lengths = torch.tensor([20, 13, 7, 1, 0])
    out = decoder.decode(logits, lengths)
    for b in range(5):
        expected = _plain_greedy(logits[b], int(lengths[b]), blank)
        assert out[b] == [(f"G{label}", pos) for pos, label in enumerate(expected)]
    time_major = decoder.decode(logits.transpose(0, 1), lengths, batch_first=False)
    assert time_major == out


def test_greedy_merges_glosses_separated_by_blank() -> None:
    decoder = Decode(_gloss_dict(2), 3, "max")
    path = torch.tensor([1, 0, 1, 1, 2, 0, 0, 1])
    logits = torch.nn.functional.one_hot(path, 3).float()[None]
    assert decoder.decode(logits, torch.tensor([8])) == [[("G1", 0), ("G2", 1), ("G1", 2)]]


def test_beam_decode_merges_repeats_and_accepts_probs() -> None:
    # Frames spell "1 _ 1 2": the best prefix is (1, 1, 2), reported as G1 G2 as the original.
    probs = torch.full((1, 4, 3), 0.02)
    for t, label in enumerate([1, 0, 1, 2]):
        probs[0, t, label] = 0.96
    decoder = Decode(_gloss_dict(2), 3, "beam", beam_width=5)
    expected = [[("G1", 0), ("G2", 1)]]
    assert decoder.decode(probs, torch.tensor([4]), probs=True) == expected
    assert decoder.decode(probs.log() + 3.0, torch.tensor([4])) == expected  # logits


def test_beam_decode_agrees_with_reference_on_model_sized_output() -> None:
    gen = torch.Generator().manual_seed(4)
    logits = 4 * torch.randn(2, 30, 60, generator=gen)
    lengths = torch.tensor([30, 17])
    decoder = Decode(_gloss_dict(59), 60, "beam")
    out = decoder.decode(logits, lengths)
    for b in range(2):
        ref, _ = reference_prefix_beam_search(logits[b, :lengths[b]].log_softmax(-1).tolist(), 10, 40)
        merged = [label for label, _ in groupby(ref)]
        assert out[b] == [(f"G{label}", pos) for pos, label in enumerate(merged)]


def test_bad_input_is_reported() -> None:
    decoder = Decode(_gloss_dict(2), 3, "beam")
    with pytest.raises(ValueError, match="classes"):
        decoder.decode(torch.zeros(1, 4, 5), torch.tensor([4]))
    with pytest.raises(ValueError, match="vid_lgt"):
        decoder.decode(torch.zeros(1, 4, 3), torch.tensor([5]))
    with pytest.raises(ValueError, match="search_mode"):
        Decode(_gloss_dict(2), 3, "greedy")
    with pytest.raises(ValueError, match="index 3"):
        Decode(_gloss_dict(3), 3, "max")
    with pytest.raises(KeyError, match="no gloss"):
        Decode({"A": [1, 1]}, 3, "max").decode(torch.tensor([[[0.0, 0.0, 9.0]]]), [1])
