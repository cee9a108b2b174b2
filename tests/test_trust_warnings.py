"""Vocabulary and scorer warnings: another --dict_path is refused, empty/all-unknown CTMs are named."""
from __future__ import annotations

import numpy as np
import pytest

from dataset.vocabulary import vocabulary_differences
from evaluation import wer
from evaluation.ctm import write_ctm
from tests.stm_support import write_stm
from dataset.registry import dataset_spec
from inference.loading import resolve_vocabulary
from utils.checkpoint import CheckpointMismatchError

SAVED = {"HAUS": [1, 4], "REGEN": [2, 3], "SONNE": [3, 1]}


def test_dict_path_other_than_the_checkpoints_vocabulary_is_refused_unless_asked(tmp_path):
    other = {"HAUS": [2, 4], "REGEN": [1, 3], "WIND": [3, 1]}   # same size, another dataset
    np.save(tmp_path / "other.npy", other)
    np.save(tmp_path / "same.npy", SAVED)
    ckpt = {"gloss_dict": SAVED}
    with pytest.raises(CheckpointMismatchError) as info:
        resolve_vocabulary(ckpt, "model.pt", str(tmp_path / "other.npy"), "phoenix")
    message = str(info.value)
    assert "other.npy" in message and "model.pt" in message and "--other_vocabulary" in message
    assert "4 glosses differ" in message
    gloss_dict, source = resolve_vocabulary(ckpt, "model.pt", str(tmp_path / "other.npy"), "phoenix",
                                            other_vocabulary=True)
    assert gloss_dict == other and source.endswith("other.npy")
    assert resolve_vocabulary(ckpt, "model.pt", str(tmp_path / "same.npy"), "phoenix")[0] == SAVED
    assert vocabulary_differences(SAVED, SAVED) == []


@pytest.fixture
def stm(tmp_path):
    path = tmp_path / "ref.stm"
    write_stm(path, [("v1", "s1", ["HAUS", "REGEN"]), ("v2", "s1", ["SONNE"])])
    return path


@pytest.mark.parametrize("hypotheses, expected, wer_value", [
    ({}, "holds no hypotheses", 100.0),
    ({"v1": ["WIND"], "v2": ["NEBEL", "WIND"]}, "none of the 3 hypothesis words", 400 / 3),
])
def test_empty_or_all_unknown_ctm_scores_as_sclite_but_warns(tmp_path, stm, capsys, hypotheses,
                                                              expected, wer_value):
    ctm = tmp_path / "hyp.ctm"
    write_ctm(ctm, hypotheses)
    with pytest.warns(wer.ScoringWarning, match=expected):
        result = wer.score_files(stm, ctm, dataset_spec("phoenix2014"))
    assert result["wer"] == pytest.approx(wer_value)
    assert wer.main([str(stm), str(ctm), "--dataset", "phoenix2014"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and expected in err[0]


def test_ordinary_ctm_gives_no_warning(tmp_path, stm, recwarn):
    ctm = tmp_path / "hyp.ctm"
    write_ctm(ctm, {"v1": ["HAUS"], "v2": ["SONNE"]})
    wer.score_files(stm, ctm, dataset_spec("phoenix2014"))
    assert not [w for w in recwarn if issubclass(w.category, wer.ScoringWarning)]
