"""Built-in scoring: CTM/STM I/O and errors, sclite alignment rules, pipeline, reports, CLI."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataset.registry import NAMES, dataset_of_stm, dataset_spec
from evaluation.align import DEL_COST, INS_COST, SUB_COST, align, count, fold_case
from evaluation.ctm import read_ctm, write_ctm
from evaluation.original import original_statistics
from evaluation.sclite import ScliteNotFoundError
from evaluation.stm import read_stm
from evaluation.textio import ScoringInputError
from evaluation.wer import main as wer_main
from evaluation.wer import score_files
from tests.stm_support import write_stm


def _stm(path: Path, rows: dict[str, tuple[str, list[str]]]) -> Path:
    write_stm(path, [(fileid, speaker, words) for fileid, (speaker, words) in rows.items()])
    return path


def _brute_force_cost(ref: list[str], hyp: list[str]) -> int:
    """Minimum edit cost by trying every subset of hypothesis words kept as diagonal steps."""
    best = len(ref) * DEL_COST + len(hyp) * INS_COST
    for k in range(1, min(len(ref), len(hyp)) + 1):
        for rs in itertools.combinations(range(len(ref)), k):
            for hs in itertools.combinations(range(len(hyp)), k):
                diag = sum(0 if fold_case(ref[r]) == fold_case(hyp[h]) else SUB_COST
                           for r, h in zip(rs, hs))
                best = min(best, diag + (len(ref) - k) * DEL_COST + (len(hyp) - k) * INS_COST)
    return best


def test_alignment_is_minimal_and_consistent() -> None:
    vocab = ["A", "b", "B", "c", "Ä", "ä"]
    for ref_len, hyp_len in itertools.product(range(4), range(4)):
        for ref in itertools.islice(itertools.product(vocab, repeat=ref_len), 0, None, 7):
            for hyp in itertools.islice(itertools.product(vocab, repeat=hyp_len), 0, None, 11):
                pairs = align(ref, hyp)
                assert [p.ref for p in pairs if p.ref is not None] == list(ref)
                assert [p.hyp for p in pairs if p.hyp is not None] == list(hyp)
                c = count(pairs)
                cost = c.sub * SUB_COST + c.dele * DEL_COST + c.ins * INS_COST
                assert cost == _brute_force_cost(list(ref), list(hyp))


def test_sclite_tie_breaking_and_case_folding() -> None:
    # sclite prefers the diagonal, then deletion over insertion only when strictly cheaper.
    assert [p.op for p in align(["P", "Q", "R"], ["p", "Q", "Q", "R"])] == ["C", "I", "C", "C"]
    assert [p.op for p in align(["A", "B"], ["C"])] == ["D", "S"]
    assert [p.op for p in align(["neg-HABEN"], ["NEG-haben"])] == ["C"]
    assert [p.op for p in align(["Ä"], ["ä"])] == ["S"]  # only ASCII letters fold
    assert [p.op for p in align(["X", "Y"], ["[EMPTY]"])] == ["D", "S"]
    assert count(align([], ["A"])).ins == 1


def test_ctm_round_trip_with_chinese(tmp_path: Path) -> None:
    write_ctm(tmp_path / "h.ctm", {"S000020_P0000_T00": ["他", "今天"], "b": []})
    assert (tmp_path / "h.ctm").read_text(encoding="utf-8").splitlines() == [
        "S000020_P0000_T00 1 0.00 0.01 他", "S000020_P0000_T00 1 0.01 0.02 今天"]
    assert [w.word for w in read_ctm(tmp_path / "h.ctm")] == ["他", "今天"]
    (tmp_path / "c.ctm").write_text("a 1 0.00 0.01 A 0.25\na 1 0.01 0.02 B -1.5e-3\n", encoding="utf-8")
    assert [w.word for w in read_ctm(tmp_path / "c.ctm")] == ["A", "B"]  # numeric confidences are fine
    with pytest.raises(ValueError, match="without spaces"):
        write_ctm(tmp_path / "bad.ctm", {"a": ["TWO WORDS"]})


@pytest.mark.parametrize("content, message", [
    (b"a 1 0.00 0.01\n", r"h\.ctm:1: expected 5 or 6 fields"),
    (b"a 1 0.00 0.01 A\na 1 0.01 0.02 B extra more\n", r"h\.ctm:2: expected 5 or 6 fields"),
    (b"a 1 x 0.01 A\n", r"h\.ctm:1: start and duration"),
    (b"a 1 0.00 0.01 A\na 1 0.01 0.02 \xe4\n", r"h\.ctm:2: not valid UTF-8"),
    (b"zz 1 0.00 0.01 A\n", r"h\.ctm:1: file id 'zz' is not in the reference"),
    (b"a 2 0.00 0.01 A\n", r"h\.ctm:1: channel '2'"),
    (b"a 1 0.00 0.01 A;B\n", r"h\.ctm:1: word 'A;B' has a special meaning for sclite"),
    (b"a 1 0 1 A 0.9\na 1 1 2 B hi\n", r"h\.ctm:2: the confidence \(sixth field\) must be a number, got 'hi'"),
    (b"a 1 0.00 0.01 A nan\n", r"h\.ctm:1: the confidence .* got 'nan'"),
])
def test_bad_ctm_names_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    stm = _stm(tmp_path / "r.stm", {"a": ("s1", ["A"])})
    (tmp_path / "h.ctm").write_bytes(content)
    with pytest.raises(ScoringInputError, match=message):
        score_files(stm, tmp_path / "h.ctm", dataset_spec("phoenix2014"))


def test_bad_stm_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "r.stm").write_text("a 1 s 0.0 1.79769e+308 A\na 1 s 0.0 1.79769e+308 B\n")
    with pytest.raises(ScoringInputError, match=r"r\.stm:2: file id 'a' already has a segment on line"):
        read_stm(tmp_path / "r.stm")
    (tmp_path / "r.stm").write_text("a 1 s 0.0 1.79769e+308 A @ B\n")
    with pytest.raises(ScoringInputError, match=r"r\.stm:1: word '@'"):
        read_stm(tmp_path / "r.stm")
    (tmp_path / "r.stm").write_text("a 1 s\n")
    with pytest.raises(ScoringInputError, match=r"r\.stm:1: expected"):
        read_stm(tmp_path / "r.stm")
    with pytest.raises(FileNotFoundError, match="missing.stm"):
        score_files(tmp_path / "missing.stm", tmp_path / "h.ctm", dataset_spec("phoenix2014"))


def test_pipeline_empty_rule_normalisation_and_order(tmp_path: Path) -> None:
    stm = _stm(tmp_path / "r.stm", {"c": ("signer01", ["SONNE", "REGEN"]),
                                     "a": ("signer01", ["A", "B", "C"]),
                                     "b": ("signer02", ["NORD", "SUED"])})
    # Lines out of order: ids interleaved and times reversed; b only has glosses normalised away.
    (tmp_path / "h.ctm").write_text("c 1 0.01 0.02 loc-REGEN\nb 1 0.00 0.01 __EPENTHESIS__\n"
                                    "c 1 0.00 0.01 S0NNE\nb 1 0.01 0.02 __PU__\n", encoding="utf-8")
    result = score_files(stm, tmp_path / "h.ctm", dataset_spec("phoenix2014"), report_dir=tmp_path / "rep")
    # a: no hypothesis -> [EMPTY] (1 sub + 2 del); b: emptied -> [EMPTY]; c: correct after rules.
    counts = tuple(result[k] for k in ("words", "correct", "sub", "del", "ins"))
    assert counts == (7, 2, 2, 3, 0)
    assert result["wer"] == pytest.approx(100 * 5 / 7)
    assert result["per_speaker"]["signer02"]["wer"] == pytest.approx(100.0)
    assert result["per_speaker"]["signer01"]["words"] == 5
    pra = (tmp_path / "rep" / "alignment.pra").read_text(encoding="utf-8")
    assert "HYP:  * * [EMPTY]\nEval: D D S\n" in pra and "File: c" in pra
    assert json.loads((tmp_path / "rep" / "scores.json").read_text())["confusions"]["deletions"]
    assert "Sum/Avg" in (tmp_path / "rep" / "summary.txt").read_text()
    # Without normalisation (CSL-Daily) the raw glosses are scored.
    raw = score_files(stm, tmp_path / "h.ctm", dataset_spec("CSL-Daily"))
    assert raw["correct"] == 0


def test_original_tool_statistics(tmp_path: Path) -> None:
    refs = {"x": ["A", "B", "C"], "y": ["D", "E"]}
    primary = {"x": ["A", "A", "B", "C"], "y": ["D", "E"]}  # repeat merged: no error
    auxiliary = {"x": ["A", "X", "C"], "y": ["D", "F"]}
    stats = original_statistics(refs, primary, auxiliary)
    assert stats["wer"] == 0.0 and stats["words"] == 5
    assert stats["wer_auxiliary"] == pytest.approx(40.0)
    assert stats["war"] == pytest.approx(40.0) and stats["wdr"] == 0.0
    stm = _stm(tmp_path / "r.stm", {k: ("s", v) for k, v in refs.items()})
    write_ctm(tmp_path / "p.ctm", primary)
    write_ctm(tmp_path / "a.ctm", auxiliary)
    result = score_files(stm, tmp_path / "p.ctm", dataset_spec("CSL-Daily"), auxiliary_ctm=tmp_path / "a.ctm")
    assert result["ins"] == 1  # sclite does not merge the repeat
    assert result["original"]["war"] == pytest.approx(40.0)


def test_missing_sclite_is_a_clear_error(tmp_path: Path) -> None:
    stm = _stm(tmp_path / "r.stm", {"a": ("s", ["A"])})
    write_ctm(tmp_path / "h.ctm", {"a": ["A"]})
    with pytest.raises(ScliteNotFoundError, match="apt-get install sctk"):
        score_files(stm, tmp_path / "h.ctm", dataset_spec("phoenix2014"), tool="sclite", sclite_path=tmp_path / "nope")


def test_cli_json_and_error_exit(tmp_path: Path, repo_root: Path) -> None:
    stm = _stm(tmp_path / "r.stm", {"a": ("s", ["A", "B"])})
    write_ctm(tmp_path / "h.ctm", {"a": ["A", "C"]})
    cmd = [sys.executable, "-m", "evaluation.wer", str(stm), str(tmp_path / "h.ctm"), "--json",
           "--dataset", "phoenix2014"]
    out = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert {k: result[k] for k in ("wer", "words", "sub", "del", "ins", "correct")} == {
        "wer": 50.0, "words": 2, "sub": 1, "del": 0, "ins": 0, "correct": 1}
    (tmp_path / "bad.ctm").write_text("a 1 0.0\n")
    bad = subprocess.run(cmd[:4] + [str(tmp_path / "bad.ctm"), *cmd[6:]], cwd=repo_root, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "bad.ctm:1" in bad.stderr


def test_cli_on_synthetic_dataset_outputs(tmp_path: Path, repo_root: Path) -> None:
    pytest.importorskip("dataset.synthetic")
    script = repo_root / "preprocess" / "dataset_preprocess.py"
    if not script.is_file():
        pytest.skip("preprocessing script not present")
    run = dict(cwd=repo_root, capture_output=True, text=True, check=True)
    subprocess.run([sys.executable, "-m", "dataset.synthetic", "--format", "phoenix2014", "--out",
                    str(tmp_path / "raw"), "--size", "tiny", "--seed", "0"], **run)
    subprocess.run([sys.executable, str(script), "--dataset-root", str(tmp_path / "raw"),
                    "--output-dir", str(tmp_path / "pre")], **run)
    stm = tmp_path / "pre" / "phoenix2014-groundtruth-dev.stm"
    segments = read_stm(stm)
    hyps = {s.fileid: list(s.words[1:]) for s in segments}  # first gloss of each sentence missed
    write_ctm(tmp_path / "h.ctm", hyps)
    out = subprocess.run([sys.executable, "-m", "evaluation.wer", str(stm), str(tmp_path / "h.ctm"),
                          "--dataset", "phoenix2014", "--json"], **run).stdout
    result = json.loads(out)
    assert result["del"] + result["sub"] == len(segments) and result["ins"] == 0
    assert result["words"] == sum(len(s.words) for s in segments)


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_file_name_tells_the_dataset(name: str) -> None:
    for split in dataset_spec(name).splits:
        assert dataset_of_stm(Path("out") / f"{name}-groundtruth-{split}.stm") is dataset_spec(name)


@pytest.mark.parametrize("name", ["ref.stm", "phoenix2014-groundtruth-.stm", "phoenix2014-groundtruth-dev.ctm",
                                  "csl-daily-groundtruth-dev.stm", "phoenix2014T-groundtruth-dev.stm"])
def test_a_reference_name_that_does_not_tell_asks_for_dataset(tmp_path: Path, capsys, name: str) -> None:
    stm = _stm(tmp_path / name, {"a": ("s", ["A"])})
    write_ctm(tmp_path / "h.ctm", {"a": ["A"]})
    assert wer_main([str(stm), str(tmp_path / "h.ctm")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {stm}: its file name does not tell the dataset (preprocessing names ground truths "
        f"<dataset>-groundtruth-<split>.stm); pass --dataset (one of {', '.join(NAMES)})"]
    assert wer_main([str(stm), str(tmp_path / "h.ctm"), "--dataset", "CSL", "--json"]) == 0


def test_cli_without_dataset_scores_a_csl_daily_reference_as_written(tmp_path: Path, repo_root: Path) -> None:
    """A CSL-Daily STM is scored without PHOENIX's rules, which would strip 'loc-' off the hypothesis."""
    rows = {"S000001_P0001_T00": ("unknown", ["loc-北", "雨"])}
    csl, phoenix = _stm(tmp_path / "CSL-Daily-groundtruth-dev.stm", rows), \
        _stm(tmp_path / "phoenix2014-groundtruth-dev.stm", rows)
    write_ctm(tmp_path / "h.ctm", {"S000001_P0001_T00": ["loc-北", "雨"]})
    cli = [sys.executable, "-m", "evaluation.wer", str(csl), str(tmp_path / "h.ctm"), "--json"]
    out = subprocess.run(cli, cwd=repo_root, capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["wer"] == 0.0 and json.loads(out)["correct"] == 2
    as_phoenix = subprocess.run(cli[:3] + [str(phoenix), *cli[4:]], cwd=repo_root, capture_output=True,
                                text=True, check=True).stdout
    assert json.loads(as_phoenix)["wer"] == 50.0  # 'loc-北' normalised to '北': one substitution
    assert score_files(csl, tmp_path / "h.ctm", dataset_spec("phoenix2014"))["wer"] == 50.0
