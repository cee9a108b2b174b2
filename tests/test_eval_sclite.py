"""Exact agreement with the real NIST sclite, sentence by sentence (skipped where sclite is absent)."""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from evaluation.align import align, fold_case
from evaluation.ctm import read_ctm
from evaluation.sclite import ScliteNotFoundError, find_sclite
from evaluation.stm import read_stm
from tests.stm_support import write_stm
from evaluation.wer import hypotheses_by_file, load_reference, score_files
from dataset.registry import dataset_spec
from dataset.synthetic import plan_videos, write_csl_split_files
from preprocess.common import stm_lines
from preprocess.datasets import csl_info, read_csl_split_file

try:
    SCLITE = find_sclite()
except ScliteNotFoundError:
    SCLITE = None
pytestmark = pytest.mark.skipif(SCLITE is None, reason="sclite (apt-get install sctk) is not installed")

_SGML_PATH = re.compile(r'<PATH id="[^"]*" word_cnt="\d+" file="([^"]*)"[^>]*>\n(.*?)\n?</PATH>', re.S)


def _edit(words: list[str], vocab: list[str], rng: random.Random) -> list[str]:
    """A hypothesis with random substitutions, insertions, deletions, repeats, case changes."""
    hyp = list(words)
    for _ in range(rng.randint(0, 4)):
        roll = rng.random()
        if roll < 0.25 and hyp:
            hyp[rng.randrange(len(hyp))] = rng.choice(vocab)
        elif roll < 0.5 and hyp:
            del hyp[rng.randrange(len(hyp))]
        elif roll < 0.7:
            hyp.insert(rng.randint(0, len(hyp)), rng.choice(vocab))
        elif roll < 0.85 and hyp:
            k = rng.randrange(len(hyp))
            hyp[k:k] = [hyp[k]] * rng.randint(1, 2)  # repeated gloss
        elif hyp:
            k = rng.randrange(len(hyp))
            hyp[k] = hyp[k].lower() if rng.random() < 0.5 else hyp[k].swapcase()
    return [] if rng.random() < 0.05 else hyp


def _write_ctm_shuffled(path: Path, hyps: dict[str, list[str]], rng: random.Random) -> None:
    """CTM lines of all files in random order; times carry the word order."""
    lines = [f"{fileid} 1 {i / 100:.2f} {(i + 1) / 100:.2f} {w}\n"
             for fileid, words in hyps.items() for i, w in enumerate(words)]
    rng.shuffle(lines)
    path.write_text("".join(lines), encoding="utf-8")


def _assert_identical(stm: Path, ctm: Path, dataset: str, report: Path) -> dict:
    result = score_files(stm, ctm, dataset_spec(dataset), tool="sclite", report_dir=report)
    assert result["disagreements"] == []
    for key in ("words", "correct", "sub", "del", "ins"):
        assert result[key] == result["python"][key], key
    assert result["per_speaker"] == result["python"]["per_speaker"]
    # The alignments themselves (sclite's tie-breaking) agree too, not only the counts.
    segments = load_reference(stm)
    hyps = hypotheses_by_file(read_ctm(ctm), segments, dataset_spec(dataset), ctm, stm)
    refs = {fold_case(s.fileid): (s.words, hyps[s.fileid]) for s in segments}
    sgml = (report / "sclite" / "hyp.ctm.sgml").read_text(encoding="utf-8", errors="replace")
    paths = _SGML_PATH.findall(sgml)
    assert len(paths) == len(segments)
    for fileid, body in paths:
        ops = [step[0] for step in body.split(":") if step]
        assert ops == [p.op for p in align(*refs[fileid])], fileid
    return result


def test_random_sentences_match_sclite(tmp_path: Path) -> None:
    rng = random.Random(0)
    vocab = ["REGEN", "SONNE", "neg-HABEN", "NEG-haben", "wolke", "Ä", "ä", "他", "今天", "年龄",
             "4", "[EMPTY]", "__ON__", "IX"]
    refs = {f"{rng.choice(['Ab', 'cd'])}_{i:04d}": [rng.choice(vocab) for _ in range(rng.randint(1, 9))]
            for i in range(600)}
    write_stm(tmp_path / "r.stm", [(f, f"signer{rng.randint(1, 4):02d}", w) for f, w in refs.items()])
    hyps = {f: _edit(w, vocab, rng) for f, w in refs.items()}
    _write_ctm_shuffled(tmp_path / "h.ctm", hyps, rng)
    result = _assert_identical(tmp_path / "r.stm", tmp_path / "h.ctm", "CSL-Daily", tmp_path / "rep")
    assert result["sub"] and result["del"] and result["ins"] and result["correct"]


def test_real_reference_sentences_match_sclite(shared_dir: Path, tmp_path: Path) -> None:
    stms = sorted((shared_dir / "reference" / "groundtruth").glob("*.stm"))
    if not stms:
        pytest.skip("no reference STMs in ../shared")
    rng = random.Random(1)
    for stm in stms:
        segments = read_stm(stm)
        vocab = sorted({w for s in segments for w in s.words})
        hyps = {s.fileid: _edit(list(s.words), vocab, rng) for s in segments}
        _write_ctm_shuffled(tmp_path / f"{stm.stem}.ctm", hyps, rng)
        dataset = stm.name.split("-groundtruth")[0]
        _assert_identical(stm, tmp_path / f"{stm.stem}.ctm", dataset, tmp_path / stm.stem)


@pytest.mark.parametrize("source", ["synthetic", "shipped"])
def test_csl_sentences_match_sclite(source: str, tmp_path: Path, request) -> None:
    """The STM that preprocessing writes for CSL: from the synthetic generator's split files (the demo
    size's train split, 200 sentences) and from the original's dev.txt as shipped (5,000 sentences;
    skipped where ../shared/reference/CSL is absent)."""
    if source == "synthetic":
        csl = dataset_spec("CSL")
        split_file = write_csl_split_files(csl, tmp_path, plan_videos(csl, "demo", 4))[0]
    else:
        split_file = request.getfixturevalue("shared_dir") / "reference" / "CSL" / "dev.txt"
        if not split_file.is_file():
            pytest.skip(f"{split_file} is absent")
    info = csl_info(read_csl_split_file(split_file), tmp_path)
    stm = tmp_path / "CSL-groundtruth-dev.stm"
    stm.write_text("".join(stm_lines(info)), encoding="utf-8")
    segments = read_stm(stm)
    vocab = sorted({w for s in segments for w in s.words})
    rng = random.Random(2)
    _write_ctm_shuffled(tmp_path / "h.ctm", {s.fileid: _edit(list(s.words), vocab, rng) for s in segments}, rng)
    result = _assert_identical(stm, tmp_path / "h.ctm", "CSL", tmp_path / "rep")
    assert result["words"] == sum(len(s.words) for s in segments) and result["sub"] and result["del"]
