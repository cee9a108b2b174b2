"""Preprocessing of the four dataset formats, run on tiny synthetic downloads."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset.layout import MANIFEST, frames_root, raw_frames_root
from dataset.registry import dataset_spec
from dataset.synthetic import FORMATS, generate
from evaluation.normalise import normalise_glosses
from preprocess import common
from preprocess.cli import main
from preprocess.common import (
    PreprocessError,
    TableRow,
    build_gloss_dict,
    drop_rows,
    make_info_dict,
    read_table,
    stm_lines,
)
from preprocess.datasets import PHOENIX2014_BROKEN_TRAIN_ROWS, phoenix2014_info

SCRIPTS = {"phoenix2014": "dataset_preprocess.py", "phoenix2014-T": "dataset_preprocess-T.py",
           "CSL-Daily": "dataset_preprocess-CSL-Daily.py", "CSL": "dataset_preprocess-CSL.py"}
STM_LINE = re.compile(r"^\S+ 1 \S+ 0\.0 1\.79769e\+308( \S+)*$")
RES = "64x48px"  # small and non-square, so a swapped width/height shows


@pytest.fixture(scope="module")
def raw_sets(tmp_path_factory) -> dict[str, Path]:
    """Tiny synthetic downloads of every format (generated once for this module)."""
    base = tmp_path_factory.mktemp("raw")
    return {fmt: _generated(base / fmt, fmt) for fmt in FORMATS}


def _generated(root: Path, fmt: str) -> Path:
    generate(fmt, root, size="tiny", seed=3)
    return root


def _fresh_copy(raw_sets: dict[str, Path], fmt: str, tmp_path: Path) -> Path:
    """A private copy of a raw set that a test may damage."""
    return Path(shutil.copytree(raw_sets[fmt], tmp_path / fmt))


def _run(fmt: str, root: Path, out: Path, *extra: str) -> int:
    return main(fmt, ["--dataset-root", str(root), "--output-dir", str(out), "--output-res", RES, *extra])


def _load(path: Path) -> dict:
    return np.load(path, allow_pickle=True).item()


def _csv_rows(fmt: str, root: Path) -> dict[str, list[list[str]]]:
    """split -> annotation rows, read independently of the code under test."""
    if fmt == "CSL":  # '<foreign folder>|<glosses>' -> [folder name, glosses]
        return {split: [[path.rsplit("/", 1)[1], glosses] for path, glosses in
                        (line.split("|") for line in (root / f"{split}.txt").read_bytes().decode().split("\r\n"))]
                for split in ("train", "dev")}
    if fmt == "CSL-Daily":
        labels = root / "sentence_label"
        split_of = dict(line.split("|") for line in (labels / "split_1.txt").read_text("utf-8").splitlines()[1:])
        rows = {"train": [], "dev": [], "test": []}
        for line in (labels / "video_map.txt").read_text("utf-8").splitlines()[1:]:
            fields = line.split("|")
            rows[split_of[fields[1]]].append(fields)
        return rows
    name = "{}.corpus.csv" if fmt == "phoenix2014" else "PHOENIX-2014-T.{}.corpus.csv"
    return {split: [line.split("|") for line in
                    (root / "annotations" / "manual" / name.format(split)).read_text("utf-8").splitlines()[1:]]
            for split in ("train", "dev", "test")}


@pytest.mark.parametrize("fmt", FORMATS)
def test_outputs_match_annotations(fmt, raw_sets, tmp_path):
    root = _fresh_copy(raw_sets, fmt, tmp_path)
    out = tmp_path / "out"
    assert _run(fmt, root, out, "--process-image", "--pack") == 0
    rows = _csv_rows(fmt, root)
    fileid_col, label_col = {"phoenix2014": (0, 3), "phoenix2014-T": (0, 5), "CSL-Daily": (1, 3), "CSL": (0, 1)}[fmt]
    all_labels = []
    assert sorted(out.glob("*_info.npy")) == [out / f"{split}_info.npy" for split in sorted(rows)]
    for split in dataset_spec(fmt).splits:
        info = _load(out / f"{split}_info.npy")
        assert info["prefix"] == str(raw_frames_root(dataset_spec(fmt), root))
        entries = [info[i] for i in range(len(info) - 1)]
        assert [e["fileid"] for e in entries] == [r[fileid_col] for r in rows[split]]
        assert [e["label"] for e in entries] == [r[label_col] for r in rows[split]]
        for entry, row in zip(entries, rows[split]):
            assert set(entry) == {"fileid", "folder", "signer", "label", "num_frames", "original_info"}
            expected_info = "|".join(row[1:]) if fmt == "CSL-Daily" else "|".join(row)  # CSL: id|glosses
            assert entry["original_info"] == expected_info
            resized = sorted(frames_root(dataset_spec(fmt), root, RES).glob(entry["folder"]))
            raw = sorted(raw_frames_root(dataset_spec(fmt), root).glob(entry["folder"]))
            assert entry["num_frames"] == len(raw) == len(resized) > 0
            assert [p.name for p in resized] == [p.name for p in raw]
            assert cv2.imread(str(resized[0])).shape == (48, 64, 3)
        all_labels += [e["label"] for e in entries]
        # STM: one line per video in info order, exact form of the published files
        stm = (out / f"{fmt}-groundtruth-{split}.stm").read_text("utf-8").splitlines()
        signer = (lambda r: "unknown") if "CSL" in fmt else (lambda r: r[2] if fmt == "phoenix2014" else r[4])
        assert stm == [f"{r[fileid_col]} 1 {signer(r)} 0.0 1.79769e+308 {r[label_col]}" for r in rows[split]]
        assert all(STM_LINE.match(line) for line in stm)
    # gloss dict: every gloss of all splits, code point order, index from 1, counts
    gloss_dict = _load(out / "gloss_dict.npy")
    counts: dict[str, int] = {}
    for label in all_labels:
        for gloss in label.split():
            counts[gloss] = counts.get(gloss, 0) + 1
    assert list(gloss_dict) == sorted(counts, key=lambda g: [ord(c) for c in g])
    assert gloss_dict == {g: [i + 1, counts[g]] for i, g in enumerate(gloss_dict)}
    assert (out / f"packed-{RES}" / "train.jpeg").is_file() and (out / f"packed-{RES}" / "train.json").is_file()


def test_script_runs_from_repo_root(raw_sets, tmp_path, repo_root):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, f"preprocess/{SCRIPTS['phoenix2014-T']}", "--dataset-root",
                             str(raw_sets["phoenix2014-T"]), "--output-dir", str(out)],
                            cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (out / "gloss_dict.npy").is_file() and (out / "phoenix2014-T-groundtruth-dev.stm").is_file()


def _failing_at(call: int, function, error: BaseException):
    """`function`, raising `error` at its `call`-th call instead (15: inside the second tiny video)."""
    calls = {"n": 0}

    def wrapper(*args):
        calls["n"] += 1
        if calls["n"] == call:
            raise error
        return function(*args)

    return wrapper


def test_resume_skips_done_videos_and_redoes_interrupted(raw_sets, tmp_path, monkeypatch, capsys):
    root = _fresh_copy(raw_sets, "phoenix2014", tmp_path)
    out = tmp_path / "out"
    real_encode = common._encode
    monkeypatch.setattr(common, "_encode", _failing_at(15, real_encode, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        _run("phoenix2014", root, out, "--process-image")
    resized = frames_root(dataset_spec("phoenix2014"), root, RES)
    markers = sorted(resized.rglob(MANIFEST))
    assert len(markers) == 1  # only the first video finished
    for frame in resized.rglob("*.png"):  # no half-written frame under a final name
        assert cv2.imread(str(frame)) is not None
    done_frame = next(markers[0].parent.glob("*.png"))
    stamp = done_frame.stat().st_mtime_ns

    monkeypatch.setattr(common, "_encode", real_encode)
    capsys.readouterr()
    assert _run("phoenix2014", root, out, "--process-image") == 0
    summary = capsys.readouterr().out
    assert "(7 resized, 0 redone, 1 up to date)" in summary
    assert done_frame.stat().st_mtime_ns == stamp
    assert len(list(resized.rglob(MANIFEST))) == 8
    assert not list(resized.rglob("*.tmp"))


def test_full_disk_while_resizing_is_one_line_and_a_rerun_finishes(raw_sets, tmp_path, monkeypatch, capsys):
    import errno
    import os

    root = _fresh_copy(raw_sets, "phoenix2014", tmp_path)
    out = tmp_path / "out"
    real_write = common.write_bytes_atomic
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(common, "write_bytes_atomic", _failing_at(15, real_write, full))
    assert _run("phoenix2014", root, out, "--process-image") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    train_frames = frames_root(dataset_spec("phoenix2014"), root, RES) / "train"
    assert err.startswith(f"error: no space left on the disk of {train_frames} "), err
    assert "1 of 4 videos were finished" in err and "rerun" in err
    monkeypatch.setattr(common, "write_bytes_atomic", real_write)
    assert _run("phoenix2014", root, out, "--process-image") == 0
    assert "(7 resized, 0 redone, 1 up to date)" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", FORMATS)
def test_unreadable_frame_is_skipped_and_counted(fmt, raw_sets, tmp_path, capsys):
    root = _fresh_copy(raw_sets, fmt, tmp_path)
    out = tmp_path / "out"
    info_before = _run(fmt, root, tmp_path / "plain")
    assert info_before == 0
    entry = _load(tmp_path / "plain" / "dev_info.npy")[0]
    broken = sorted(raw_frames_root(dataset_spec(fmt), root).glob(entry["folder"]))[1]
    broken.write_bytes(b"not an image")
    capsys.readouterr()
    assert _run(fmt, root, out, "--process-image") == 0
    printed = capsys.readouterr().out
    assert "unreadable frames skipped: 1" in printed and str(broken) in printed
    assert _load(out / "dev_info.npy")[0]["num_frames"] == entry["num_frames"] - 1


def test_missing_root(tmp_path, capsys):
    assert _run("phoenix2014", tmp_path / "nowhere", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "--dataset-root" in err


@pytest.mark.parametrize("fmt, relative", [
    ("phoenix2014", "annotations/manual/dev.corpus.csv"),
    ("phoenix2014-T", "annotations/manual/PHOENIX-2014-T.test.corpus.csv"),
    ("CSL-Daily", "sentence_label/split_1.txt"),
    ("CSL-Daily", "sentence_label/video_map.txt"),
    ("CSL", "dev.txt"),
])
def test_missing_annotation_file(fmt, relative, raw_sets, tmp_path, capsys):
    root = _fresh_copy(raw_sets, fmt, tmp_path)
    (root / relative).unlink()
    assert _run(fmt, root, tmp_path / "out") == 2
    assert str(root / relative) in capsys.readouterr().err
    assert not (tmp_path / "out" / "gloss_dict.npy").exists()


@pytest.mark.parametrize("fmt, relative", [
    ("phoenix2014", "annotations/manual/train.corpus.csv"),
    ("phoenix2014-T", "annotations/manual/PHOENIX-2014-T.dev.corpus.csv"),
    ("CSL-Daily", "sentence_label/video_map.txt"),
])
def test_wrong_header(fmt, relative, raw_sets, tmp_path, capsys):
    root = _fresh_copy(raw_sets, fmt, tmp_path)
    path = root / relative
    lines = path.read_text("utf-8").splitlines()
    path.write_text("\n".join(["name,video,signer"] + lines[1:]) + "\n", encoding="utf-8")
    assert _run(fmt, root, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"{path}:1" in err and "name,video,signer" in err and lines[0] in err


def test_wrong_field_count_names_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a|b\n1|2\n1|2|3\n", encoding="utf-8")
    with pytest.raises(PreprocessError, match=r"t\.csv:3: 3 fields, expected 2"):
        read_table(path, ("a", "b"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_video_folder(fmt, raw_sets, tmp_path, capsys):
    root = _fresh_copy(raw_sets, fmt, tmp_path)
    assert _run(fmt, root, tmp_path / "first") == 0
    last = dataset_spec(fmt).splits[-1]  # test, or dev for CSL
    entry = _load(tmp_path / "first" / f"{last}_info.npy")[1]
    for frame in raw_frames_root(dataset_spec(fmt), root).glob(entry["folder"]):
        frame.unlink()
    assert _run(fmt, root, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "1 video folder(s) have no frames" in err and entry["folder"] in err and "--drop-empty" in err
    assert _run(fmt, root, tmp_path / "out", "--drop-empty") == 0
    test_info = _load(tmp_path / "out" / f"{last}_info.npy")
    assert [test_info[k]["fileid"] for k in test_info if k != "prefix"] == \
        [v["fileid"] for k, v in _load(tmp_path / "first" / f"{last}_info.npy").items() if k not in ("prefix", 1)]


def test_broken_train_row_is_dropped(raw_sets, tmp_path):
    assert PHOENIX2014_BROKEN_TRAIN_ROWS == (2390,)
    rows = [TableRow(i + 2, (str(i),)) for i in range(2393)]
    kept = drop_rows(rows, PHOENIX2014_BROKEN_TRAIN_ROWS)
    assert len(kept) == 2392 and "2390" not in [r.fields[0] for r in kept] and kept[2390].fields == ("2391",)
    info = phoenix2014_info(dataset_spec("phoenix2014"), raw_sets["phoenix2014"], "train", broken_rows=(1,))
    full = phoenix2014_info(dataset_spec("phoenix2014"), raw_sets["phoenix2014"], "train", broken_rows=())
    assert [info[i]["fileid"] for i in range(len(info) - 1)] == \
        [full[i]["fileid"] for i in range(len(full) - 1) if i != 1]
    rows = _csv_rows("phoenix2014", raw_sets["phoenix2014"])["dev"]
    assert len(phoenix2014_info(dataset_spec("phoenix2014"), raw_sets["phoenix2014"], "dev")) == len(rows) + 1


def test_official_stm_is_copied_verbatim(raw_sets, tmp_path):
    root = _fresh_copy(raw_sets, "phoenix2014", tmp_path)
    official = root / "evaluation" / "phoenix2014-groundtruth-dev.stm"
    official.parent.mkdir()
    official.write_text("x 1 signer01 0.0 1.79769e+308 A B\n", encoding="utf-8")
    assert _run("phoenix2014", root, tmp_path / "out") == 0
    assert (tmp_path / "out" / "phoenix2014-groundtruth-dev.stm").read_bytes() == official.read_bytes()
    assert _run("phoenix2014", root, tmp_path / "out2", "--stm-from-annotations") == 0
    assert (tmp_path / "out2" / "phoenix2014-groundtruth-dev.stm").read_text("utf-8") != official.read_text("utf-8")


def test_stm_uses_scoring_normalisation():
    info = make_info_dict("p", [{"fileid": "v", "signer": "Signer01", "label": "loc-NORD  __LEFTHAND__ REGEN"}])
    normalise = common.resolve_scoring_normaliser(dataset_spec("phoenix2014"))
    expected = " ".join(normalise_glosses(["loc-NORD", "__LEFTHAND__", "REGEN"], dataset_spec("phoenix2014")))
    assert stm_lines(info, normalise) == [f"v 1 Signer01 0.0 1.79769e+308 {expected}\n"]
    assert expected == "NORD REGEN"
    csl = common.resolve_scoring_normaliser(dataset_spec("CSL-Daily"))
    assert csl(["loc-今天"]) == ["loc-今天"]


@pytest.mark.parametrize("name", ["phoenix2014-groundtruth-dev.stm", "phoenix2014-groundtruth-test.stm",
                                  "phoenix2014-T-groundtruth-dev.stm", "phoenix2014-T-groundtruth-test.stm",
                                  "CSL-Daily-groundtruth-dev.stm", "CSL-Daily-groundtruth-test.stm"])
def test_stm_writer_reproduces_published_files(name, shared_dir):
    """Rebuilding info entries from a published STM and writing them back gives the same bytes."""
    reference = (shared_dir / "reference" / "groundtruth" / name).read_text("utf-8")
    dataset = name.split("-groundtruth")[0]
    entries = []
    for line in reference.splitlines():
        fileid, _channel, signer, _start, _end, *glosses = line.split(" ")
        entries.append({"fileid": fileid, "signer": signer, "label": " ".join(glosses)})
    # The published -T files were written raw (two lines keep HABEN2); ours normalise by default so that
    # reference and hypothesis are treated alike, so the byte-for-byte check uses the raw writer there.
    published_normalised = dataset_spec(dataset).stm_normalised and dataset != "phoenix2014-T"
    normalise = common.resolve_scoring_normaliser(dataset_spec(dataset)) if published_normalised else None
    written = "".join(stm_lines(make_info_dict("p", entries), normalise))
    assert written.rstrip("\n") == reference.rstrip("\n")  # some published files lack the final newline


def test_gloss_dict_code_point_order():
    infos = [make_info_dict("p", [{"label": "b a"}, {"label": "今天 B"}]), make_info_dict("p", [{"label": "a 1 _x"}])]
    assert build_gloss_dict(infos) == {"1": [1, 1], "B": [2, 1], "_x": [3, 1], "a": [4, 2], "b": [5, 1],
                                       "今天": [6, 1]}


def test_marker_records_frames(raw_sets, tmp_path):
    root = _fresh_copy(raw_sets, "CSL-Daily", tmp_path)
    assert _run("CSL-Daily", root, tmp_path / "out", "-p", "-m", "--workers", "2") == 0
    marker = next(frames_root(dataset_spec("CSL-Daily"), root, RES).rglob(MANIFEST))
    record = json.loads(marker.read_text())
    assert record["frames"] == len(list(marker.parent.glob("*.jpg"))) and record["unreadable"] == []


def test_stm_normalise_option(raw_sets, tmp_path):
    root = _fresh_copy(raw_sets, "phoenix2014-T", tmp_path)
    csv = root / "annotations" / "manual" / "PHOENIX-2014-T.dev.corpus.csv"
    lines = csv.read_text("utf-8").splitlines()
    fields = lines[1].split("|")
    fields[5] = "loc-NORD HABEN2"
    csv.write_text("\n".join([lines[0], "|".join(fields)] + lines[2:]) + "\n", encoding="utf-8")
    assert _run("phoenix2014-T", root, tmp_path / "raw", "--no-stm-normalise") == 0
    assert _run("phoenix2014-T", root, tmp_path / "norm") == 0
    stm = "phoenix2014-T-groundtruth-dev.stm"
    assert (tmp_path / "raw" / stm).read_text("utf-8").splitlines()[0].endswith(" loc-NORD HABEN2")
    assert (tmp_path / "norm" / stm).read_text("utf-8").splitlines()[0].endswith(" NORD HABEN")


def test_pack_needs_finished_resizing(raw_sets, tmp_path, capsys):
    root = _fresh_copy(raw_sets, "phoenix2014", tmp_path)
    assert _run("phoenix2014", root, tmp_path / "out", "--pack") == 2
    assert "--process-image" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--output-res", "256px"], ["--workers", "0"]])
def test_bad_options_are_usage_errors(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main("CSL-Daily", ["--dataset-root", str(tmp_path), *option])
    assert stop.value.code == 2 and option[1] in capsys.readouterr().err


@pytest.mark.parametrize("fmt", FORMATS)
def test_dataset_is_recorded_beside_the_original_layout(fmt, raw_sets, tmp_path):
    from dataset.provenance import RECORD, recorded_dataset

    out = tmp_path / "out"
    assert _run(fmt, raw_sets[fmt], out) == 0
    for name in ("gloss_dict.npy", *(f"{split}_info.npy" for split in dataset_spec(fmt).splits)):
        assert recorded_dataset(out / name) == fmt
    info = _load(out / "dev_info.npy")  # the original feeder counts len(info) - 1 videos: one str key only
    assert [k for k in info if isinstance(k, str)] == ["prefix"] and sorted(k for k in info if k != "prefix") == \
        list(range(len(info) - 1))
    assert json.loads((out / RECORD).read_text())["dataset"] == fmt
    np.save(out / "dev_info.npy", {**info, 0: {**info[0], "label": "X"}}, allow_pickle=True)
    assert recorded_dataset(out / "dev_info.npy") is None  # changed since: no longer vouched for
    assert recorded_dataset(out / "train_info.npy") == fmt


def test_empty_split_is_refused_with_the_reason(raw_sets, tmp_path, capsys):
    root = _fresh_copy(raw_sets, "phoenix2014", tmp_path)
    csv = root / "annotations" / "manual" / "dev.corpus.csv"
    lines = csv.read_text("utf-8").splitlines()
    csv.write_text(lines[0] + "\n", encoding="utf-8")  # the header only
    assert _run("phoenix2014", root, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "error: the dev split of phoenix2014 is empty: the annotations in" in err
    assert not (tmp_path / "out" / "dev_info.npy").exists()
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for path in (raw_frames_root(dataset_spec("phoenix2014"), root) / "dev").rglob("*.png"):
        path.unlink()
    assert _run("phoenix2014", root, tmp_path / "out", "--drop-empty") == 2
    err = capsys.readouterr().err
    assert f"none of its {len(lines) - 1} videos has frames (--drop-empty left it empty)" in err


def test_outputs_never_replace_inputs_or_files_no_preprocessing_wrote(raw_sets, tmp_path, capsys):
    root = raw_sets["phoenix2014"]
    (tmp_path / "afile").write_text("mine")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "gloss_dict.npy").write_bytes(b"my own dictionary")
    for out, said in ((tmp_path / "afile", "is a file, not a folder"), (root, "is the dataset root"),
                      (mine, "gloss_dict.npy, which no preprocessing recorded there")):
        assert _run("phoenix2014", root, out) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err
    assert (tmp_path / "afile").read_text() == "mine" and (mine / "gloss_dict.npy").read_bytes() == b"my own dictionary"
    assert not (root / "dataset.json").exists()
    assert _run("phoenix2014", root, mine, "--force") == 0  # what the message says
    assert _run("phoenix2014", root, mine) == 0  # a rerun replaces what preprocessing recorded
    capsys.readouterr()


def test_an_absurd_output_resolution_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main("phoenix2014", ["--dataset-root", str(tmp_path), "--output-res", "99999x99999px"])
    assert stop.value.code == 2 and "from 1 to 8192 pixels" in capsys.readouterr().err
