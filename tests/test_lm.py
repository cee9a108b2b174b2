"""Gloss n-gram LM: Kneser-Ney estimate against hand-computed values, ARPA round trip, lookups."""
from __future__ import annotations

import itertools
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from decoding.arpa import ArpaError, read_arpa, write_arpa
from decoding.build_lm import estimate_kneser_ney, main, read_sentences
from decoding.lm import LN_10, NGramLM, TokenLM

pytestmark = [pytest.mark.filterwarnings("ignore:could not estimate Kneser-Ney"),
              pytest.mark.usefixtures("single_thread")]

# <s> a b </s> | <s> a c </s> | <s> b a c </s> | <s> c </s>
CORPUS = [["a", "b"], ["a", "c"], ["b", "a", "c"], ["c"]]


def _bigram_model() -> NGramLM:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unigram discounts fall back (no count-1 unigrams)
        return estimate_kneser_ney(CORPUS, order=2)


def test_bigram_kneser_ney_matches_hand_computation() -> None:
    model = _bigram_model()
    # Unigram adjusted counts (distinct left words): a, b, c, </s> all 2; none has count 1, so the
    # unigram discounts are lmplz's fallback (D2 = 1): gamma = 4 * 1 / 8; uniform over 5 words
    # (<unk>, </s>, a, b, c; never <s>).
    p_uni = (2 - 1.0) / 8 + 0.5 / 5
    assert model.probs[("a",)] == pytest.approx(math.log10(p_uni), abs=1e-6)
    assert model.probs[("<unk>",)] == pytest.approx(math.log10(0.5 / 5), abs=1e-6)
    assert model.probs[("<s>",)] == 0.0
    # Bigram counts of counts: n1 = 5, n2 = 2, n3 = 1, n4 = 0 -> Y = 5/9, D1 = 5/9, D2 = 7/6, D3 = 3.
    d1, d2, d3 = 5 / 9, 7 / 6, 3.0
    gamma_bos = (d2 * 1 + d1 * 2) / 4  # <s> a: 2, <s> b: 1, <s> c: 1
    p_a_bos = (2 - d2) / 4 + gamma_bos * p_uni
    gamma_a = (d1 + d2) / 3  # a b: 1, a c: 2
    p_c_a = (2 - d2) / 3 + gamma_a * p_uni
    p_eos_c = (3 - d3) / 3 + 1.0 * p_uni  # c </s>: 3, the context's only continuation
    assert model.probs[("<s>", "a")] == pytest.approx(math.log10(p_a_bos), abs=1e-6)
    assert model.backoffs[("a",)] == pytest.approx(math.log10(gamma_a), abs=1e-6)
    assert model.backoffs[("</s>",)] == 0.0  # never a context
    expected = math.log10(p_a_bos * p_c_a * p_eos_c)
    assert model.sentence_log10(["a", "c"]) == pytest.approx(expected, abs=1e-6)
    # Backoff: "c b" was never seen; an unknown word is <unk>.
    assert model.log10_prob(["c"], "b") == pytest.approx(math.log10(1.0 * p_uni), abs=1e-6)
    assert model.log10_prob(["a"], "zz") == pytest.approx(math.log10(gamma_a * 0.1), abs=1e-6)


def test_every_context_is_a_distribution() -> None:
    model = estimate_kneser_ney(CORPUS * 3 + [["b", "b", "c", "a"], ["c", "a"]], order=3)
    vocab = [w for w in model.vocabulary if w != "<s>"]
    for context in itertools.product(["<s>", "a", "b", "c", "zz"], repeat=2):
        if context[1] == "<s>":
            continue
        total = sum(10 ** model.log10_prob(list(context), w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-9)


def test_arpa_round_trip(tmp_path) -> None:
    model = estimate_kneser_ney(CORPUS * 3 + [["b", "b", "c", "a"]], order=3)
    path = tmp_path / "gloss.arpa"
    write_arpa(model, path)
    text = path.read_text()
    assert "ngram 1=6" in text and "\\3-grams:" in text and text.rstrip().endswith("\\end\\")
    back = read_arpa(path)
    assert back.order == 3 and list(back.probs) == list(model.probs)
    for gram, value in model.probs.items():
        assert back.probs[gram] == pytest.approx(value, rel=1e-6, abs=1e-7)
        assert back.backoffs.get(gram, 0.0) == pytest.approx(model.backoffs.get(gram, 0.0), abs=1e-6)
    write_arpa(back, tmp_path / "again.arpa")
    assert (tmp_path / "again.arpa").read_text() == text


def test_kenlm_scores_our_arpa_identically(tmp_path) -> None:
    kenlm = pytest.importorskip("kenlm")
    model = estimate_kneser_ney(CORPUS * 2 + [["b", "b", "c", "a"]], order=3)
    write_arpa(model, tmp_path / "gloss.arpa")
    reference = kenlm.Model(str(tmp_path / "gloss.arpa"))
    for sentence in (["a", "b"], ["b", "a", "c"], ["c", "zz", "a"], [], ["a", "a", "a", "b"]):
        assert model.sentence_log10(sentence) == pytest.approx(
            reference.score(" ".join(sentence), bos=True, eos=True), abs=1e-5)


def test_reader_errors_name_the_line(tmp_path) -> None:
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\ta\n-x\tb\n\\end\\\n")
    with pytest.raises(ArpaError, match=r"bad.arpa:6"):
        read_arpa(bad)
    bad.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1\ta\n-1\tb\n\\end\\\n")
    with pytest.raises(ArpaError, match="declares 3"):
        read_arpa(bad)
    with pytest.raises(FileNotFoundError, match="gloss_lm.py"):
        read_arpa(tmp_path / "missing.arpa")


def test_token_tables_agree_with_dict_scoring() -> None:
    model = estimate_kneser_ney(CORPUS * 3 + [["b", "b", "c", "a"]], order=3)
    words = [None, "a", "b", "c", "zz"]  # class 0 is the blank, "zz" is outside the model
    lm = TokenLM(model, words)
    targets = ["a", "b", "c", "zz", "</s>"]
    ids = torch.tensor([lm.word_id.get(w, lm.word_id["<unk>"]) for w in targets])
    for context in itertools.product(["<s>", "a", "b", "c", "zz"], repeat=2):
        if context[1] == "<s>":
            continue
        history = torch.tensor([lm.word_id.get(w, lm.word_id["<unk>"]) for w in context])
        got = lm.log_prob(history[None], ids[None])[0]
        expected = [model.log10_prob(list(context), w) * LN_10 for w in targets]
        torch.testing.assert_close(got, torch.tensor(expected), atol=1e-5, rtol=0)


def test_cli_builds_from_info_and_stm(tmp_path, capsys) -> None:
    info = {i: {"fileid": f"v{i}", "label": " ".join(s)} for i, s in enumerate(CORPUS)}
    np.save(tmp_path / "train_info.npy", info)
    stm = tmp_path / "train.stm"
    stm.write_text("".join(f"v{i} 1 S 0.0 1.79769e+308 {' '.join(s)}\n" for i, s in enumerate(CORPUS)))
    assert read_sentences(tmp_path / "train_info.npy") == CORPUS == read_sentences(stm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["--annotations", str(stm), "--out", str(tmp_path / "lm.arpa"), "--order", "2"]) == 0
    assert "4 sentences" in capsys.readouterr().out
    assert read_arpa(tmp_path / "lm.arpa").probs == pytest.approx(_bigram_model().probs, abs=1e-6)
    assert main(["--annotations", str(tmp_path / "none.stm"), "--out", str(tmp_path / "x")]) == 2
    assert "error:" in capsys.readouterr().err


def test_the_commands_run_as_scripts(tmp_path) -> None:
    root = Path(__file__).resolve().parents[1]
    corpus = tmp_path / "sentences.txt"
    corpus.write_text("\n".join(" ".join(s) for s in CORPUS * 3) + "\n")
    built = subprocess.run([sys.executable, "preprocess/gloss_lm.py", "--annotations", str(corpus),
                            "--out", str(tmp_path / "lm.arpa"), "--order", "2"],
                           cwd=root, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert read_arpa(tmp_path / "lm.arpa").order == 2
    tuning = subprocess.run([sys.executable, "tune_lm.py", "--help"], cwd=root, capture_output=True,
                            text=True)
    assert tuning.returncode == 0 and "--lm-path" in tuning.stdout and "--beam-width" in tuning.stdout
