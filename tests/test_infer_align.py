"""inference/ helpers: CTC forced alignment against brute force, spans, options."""
from __future__ import annotations

import itertools

import pytest
import torch

from dataset.layout import parse_resolution
from inference.align import forced_align, gloss_step_spans, steps_to_frames
from inference.loading import check_vocabulary, classifier_num_classes
from utils.checkpoint import CheckpointMismatchError
from utils.config import ConfigError
from utils.device import select_device


def _collapse(path: tuple[int, ...], blank: int = 0) -> list[int]:
    """CTC collapse: merge repeats, drop blanks."""
    out, previous = [], None
    for label in path:
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return out


@pytest.mark.parametrize("targets", [[1], [1, 2], [2, 2], [3, 1, 2], [1, 1, 1]])
def test_forced_align_is_the_best_path_by_brute_force(targets):
    steps, classes = 6, 4
    for seed in range(4):
        noise = torch.randn(steps, classes, generator=torch.Generator().manual_seed(seed))
        log_probs = noise.log_softmax(-1)
        table = log_probs.tolist()
        best = max((sum(table[t][p[t]] for t in range(steps)), p)
                   for p in itertools.product(range(classes), repeat=steps) if _collapse(p) == targets)
        alignment = forced_align(log_probs, targets)
        labels = [targets[k] if k >= 0 else 0 for k in alignment]
        assert _collapse(tuple(labels)) == targets
        assert sum(float(log_probs[t, labels[t]]) for t in range(steps)) == pytest.approx(best[0], abs=1e-5)


def test_forced_align_infeasible_and_empty():
    log_probs = torch.zeros(2, 3).log_softmax(-1)
    with pytest.raises(ValueError, match="cannot be aligned"):
        forced_align(log_probs, [1, 1])  # needs a blank between the repeats: 3 steps
    assert forced_align(log_probs, []) == [-1, -1]


def test_spans_and_frames():
    assert gloss_step_spans([-1, 0, 0, -1, 1, 2, 2], 3) == [(1, 2), (4, 4), (5, 6)]
    assert steps_to_frames(1, 2, 4, 30) == (4, 11)
    assert steps_to_frames(7, 7, 4, 30) == (28, 29)  # the last step covers the padded tail


def test_options():
    assert parse_resolution("256x256px") == (256, 256) and parse_resolution("210x260") == (210, 260)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_resolution("big")
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="--device"):
        select_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            select_device("0")


def test_classifier_classes_and_vocabulary_check():
    assert classifier_num_classes({"classifier.weight": torch.zeros(32, 7)}, 32) == 7  # NormLinear
    assert classifier_num_classes({"classifier.weight": torch.zeros(7, 32)}, 32) == 7  # Linear
    assert classifier_num_classes({"classifier.weight": torch.zeros(7, 9)}, 32) is None
    check_vocabulary(3, {"A": [1, 1], "B": [2, 1]}, "m.pt", "d.npy")
    with pytest.raises(CheckpointMismatchError, match=r"m\.pt has a classifier of 4 classes .* d\.npy has 2"):
        check_vocabulary(4, {"A": [1, 1], "B": [2, 1]}, "m.pt", "d.npy")
