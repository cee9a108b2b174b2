"""CSL (USTC's continuous CSL): the original's split files as shipped, a synthetic CSL-format download
through preprocessing, one epoch of training, scoring (dev only), test_one_video.py and the web page."""
from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import main as main_module
import test_one_video
from dataset.registry import dataset_spec
from dataset.synthetic import CSL_FOREIGN_ROOT, generate
from evaluation.wer import score_files
from inference.loading import load_model
from inference.web import Limits, Recogniser
from preprocess.cli import main as preprocess
from preprocess.common import PreprocessError, build_gloss_dict
from preprocess.datasets import csl_info, csl_infos, read_csl_split_file
from tests.train_support import REPO_ROOT, tiny_config, write_config
from training.startup import dataset_eval_splits
from utils.errors import ConfigError

RES = "64x64px"
SHIPPED_LINES = {"train": 20000, "dev": 5000}  # 25,000 videos; `wc -l` says 19,999 and 4,999 (no final newline)


@pytest.fixture
def shipped(shared_dir) -> Path:
    """The original's CSL split files exactly as shipped (../shared/reference/CSL)."""
    folder = shared_dir / "reference" / "CSL"
    if not (folder / "train.txt").is_file():
        pytest.skip(f"the original CSL split files are not in {folder}")
    return folder


def test_the_shipped_split_files_parse_as_shipped(shipped):
    lines = {split: read_csl_split_file(shipped / f"{split}.txt") for split in SHIPPED_LINES}
    for split, count in SHIPPED_LINES.items():
        raw = (shipped / f"{split}.txt").read_bytes()  # the form they ship in: CRLF, no final line end
        assert raw.count(b"\r\n") == count - 1 and not raw.endswith(b"\n")
        assert len(lines[split]) == count and [line.line_no for line in lines[split]] == list(range(1, count + 1))
        assert all(line.path == f"{CSL_FOREIGN_ROOT}/{line.name}" for line in lines[split])
    names = [line.name for split in lines.values() for line in split]
    assert sorted(names) == sorted(f"video{n}" for n in range(25000))  # one folder per video, no repeats
    assert lines["train"][0].name == "video250" and lines["dev"][0].name == "video450"
    # Glosses split on spaces give exactly the shipped vocabulary, voc.txt.
    infos = {split: csl_info(split_lines, Path("/nowhere")) for split, split_lines in lines.items()}
    vocabulary = (shipped / "voc.txt").read_text(encoding="utf-8").splitlines()
    assert sorted(build_gloss_dict(infos.values())) == sorted(vocabulary) and len(vocabulary) == 179


def test_an_empty_root_reports_the_missing_folders_with_counts_and_examples(shipped, tmp_path, capsys):
    root, out = tmp_path / "CSL", tmp_path / "out"
    root.mkdir()
    for split in SHIPPED_LINES:
        shutil.copy(shipped / f"{split}.txt", root)
    with pytest.raises(PreprocessError) as error:
        csl_infos(dataset_spec("CSL"), root)
    message = str(error.value)
    assert "train.txt: 20000 of 20000 lines" in message and "dev.txt: 5000 of 5000 lines" in message
    assert f"line 1: {CSL_FOREIGN_ROOT}/video250 -> {root / 'video250'}" in message
    assert preprocess("CSL", ["--dataset-root", str(root), "--output-dir", str(out)]) == 2
    assert "20000 of 20000 lines" in capsys.readouterr().err and not out.exists()


def test_split_files_in_other_forms_and_their_mistakes(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes("\ufeffC:\\data\\CSL\\video7\\|他 的 朋友\n\n/x/video8|是\n".encode())  # BOM, LF, final newline
    assert [(line.line_no, line.name, line.glosses) for line in read_csl_split_file(path)] == \
        [(1, "video7", "他 的 朋友"), (3, "video8", "是")]
    path.write_bytes(b"/x/video1|a b\r\n/x/video2\r\n")
    with pytest.raises(PreprocessError, match=r"train\.txt:2: expected '<video folder>\|<glosses>'"):
        read_csl_split_file(path)
    path.write_bytes(b"/x/video1|a")
    (tmp_path / "dev.txt").write_bytes(b"/y/video2|b\r\n/y/video1|a")
    with pytest.raises(PreprocessError, match=r"dev\.txt:2: video folder 'video1' is also named at train\.txt:1"):
        csl_infos(dataset_spec("CSL"), tmp_path)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict:
    """A tiny synthetic CSL download, preprocessed (resized and packed)."""
    base = tmp_path_factory.mktemp("csl")
    root, out = base / "raw", base / "pre"
    generate("CSL", root, size="tiny", seed=0)
    assert preprocess("CSL", ["--dataset-root", str(root), "--output-dir", str(out), "--output-res", RES,
                              "--process-image", "--multiprocessing", "--workers", "2", "--pack"]) == 0
    return {"raw": root, "pre": out}


def test_the_generator_writes_split_files_in_the_shipped_form(prepared):
    for split in ("train", "dev"):
        raw = (prepared["raw"] / f"{split}.txt").read_bytes()
        assert b"\r\n" in raw and not raw.endswith(b"\n") and b"\n" not in raw.replace(b"\r\n", b"")
        for line in raw.decode().split("\r\n"):
            path, glosses = line.split("|")
            assert re.fullmatch(rf"{CSL_FOREIGN_ROOT}/video\d+", path) and glosses.split()
            assert (prepared["raw"] / path.rsplit("/", 1)[1]).is_dir()  # mapped to the root by folder name
    assert not (prepared["raw"] / "test.txt").exists()
    assert sorted(p.name for p in prepared["pre"].glob("*.stm")) == ["CSL-groundtruth-dev.stm",
                                                                     "CSL-groundtruth-train.stm"]
    assert sorted(p.name for p in (prepared["pre"] / f"packed-{RES}").glob("*.json")) == ["dev.json", "train.json"]
    assert (prepared["raw"] / "features" / f"fullFrame-{RES}" / "video1000" / "000000.jpg").is_file()


def test_a_partial_download_names_its_missing_lines_and_drop_empty_leaves_them_out(prepared, tmp_path, capsys):
    root = Path(shutil.copytree(prepared["raw"], tmp_path / "raw", symlinks=True))
    shutil.rmtree(root / "video1")
    assert preprocess("CSL", ["--dataset-root", str(root), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"train.txt: 1 of 4 lines name a video folder that is not in {root} " \
           f"(line 2: {CSL_FOREIGN_ROOT}/video1 -> {root / 'video1'})" in err
    assert "1 video folder(s) have no frames" in err and "--drop-empty" in err
    assert preprocess("CSL", ["--dataset-root", str(root), "--output-dir", str(tmp_path / "out"), "--drop-empty"]) == 0
    info = np.load(tmp_path / "out" / "train_info.npy", allow_pickle=True).item()
    assert [info[k]["fileid"] for k in range(len(info) - 1)] == ["video0", "video2", "video3"]


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory) -> dict:
    """One epoch of a tiny model on config/CSL.yaml, then --phase test of its best checkpoint."""
    tmp = tmp_path_factory.mktemp("csl_run")
    data = {"raw": prepared["raw"], "pre": prepared["pre"]}

    def run(work: Path, *extra: str, **overrides) -> dict:
        cfg = tiny_config(data, work, num_epoch=1, feeder_args={"frames_res": RES}, **overrides)
        cfg["base"] = str(REPO_ROOT / "config" / "CSL.yaml")
        return main_module.main(["--config", str(write_config(cfg, tmp / f"{work.name}.yaml")), *extra])

    summary = run(tmp / "train")
    tested = run(tmp / "test", "--load-weights", str(tmp / "train" / "best_model.pt"), phase="test")
    return {"train": tmp / "train", "test": tmp / "test", "summary": summary, "tested": tested, **data}


def test_training_evaluates_dev_and_test_phase_scores_dev_saying_so(trained):
    note = "CSL has no test split (train and dev only): {} scores dev"
    train_log = (trained["train"] / "log.txt").read_text(encoding="utf-8")
    assert note.format("train") in train_log and "dev WER" in train_log
    assert (trained["train"] / "epoch_0" / "output-hypothesis-dev.ctm").is_file()
    assert "test_wer" not in trained["summary"] and not (trained["train"] / "test_best").exists()
    assert note.format("test") in (trained["test"] / "log.txt").read_text(encoding="utf-8")
    assert set(trained["tested"]) == {"dev_wer", "dev_conv_wer"}
    ckpt = torch.load(trained["train"] / "best_model.pt", weights_only=True)
    assert ckpt["config"]["dataset"] == "CSL" and ckpt["config"]["eval_splits"] == ["dev"]


def test_eval_splits_keep_the_splits_the_dataset_has():
    csl = {"dataset": "CSL", "phase": "test", "eval_splits": ["dev", "test"]}
    assert dataset_eval_splits(csl, dataset_spec("CSL")) == \
        (["dev"], "CSL has no test split (train and dev only): test scores dev")
    assert dataset_eval_splits({**csl, "dataset": "CSL-Daily"}, dataset_spec("CSL-Daily")) == (["dev", "test"], None)
    with pytest.raises(ConfigError, match=r"eval_splits \['test'\]: CSL has only the splits train, dev; .*"
                                          r"--set eval_splits=\[dev\]"):
        dataset_eval_splits({**csl, "eval_splits": ["test"]}, dataset_spec("CSL"))


def test_the_dev_hypotheses_score_the_same_from_the_cli_and_with_sclite(trained):
    stm = trained["pre"] / "CSL-groundtruth-dev.stm"
    ctm = trained["test"] / "eval" / "output-hypothesis-dev.ctm"
    result = score_files(stm, ctm, dataset_spec("CSL"))
    assert result["wer"] == pytest.approx(trained["tested"]["dev_wer"])
    from evaluation.sclite import ScliteNotFoundError, find_sclite

    try:
        find_sclite()
    except ScliteNotFoundError:
        return  # the agreement on CSL STMs is also in tests/test_eval_sclite.py (skipped there too)
    agreed = score_files(stm, ctm, dataset_spec("CSL"), tool="sclite")
    assert agreed["disagreements"] == [] and agreed["wer"] == result["wer"]


def test_test_one_video_and_the_web_page_accept_a_csl_checkpoint(trained, tmp_path, monkeypatch, capsys):
    video = trained["raw"] / "video1000"
    ours = trained["train"] / "best_model.pt"

    def recognise(*argv: str) -> dict:
        assert test_one_video.main(["--video_path", str(video), "--device", "cpu", "--json", *argv]) == 0
        return json.loads(capsys.readouterr().out)

    expected = recognise("--model_path", str(ours))
    # A weights-only (published-format) CSL checkpoint: --language csl picks preprocess/CSL/gloss_dict.npy.
    published = tmp_path / "published.pt"
    state = torch.load(ours, weights_only=True)
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state["model_state_dict"].items()}}, published)
    config = tmp_path / "arch.yaml"
    config.write_text(json.dumps({"base": str(REPO_ROOT / "config" / "CSL.yaml"), "model_args": state["model_args"],
                                  "feeder_args": state["config"]["feeder_args"]}))
    (tmp_path / "preprocess" / "CSL").mkdir(parents=True)
    shutil.copy(trained["pre"] / "gloss_dict.npy", tmp_path / "preprocess" / "CSL")
    monkeypatch.chdir(tmp_path)
    by_language = recognise("--model_path", str(published), "--language", "csl", "--config", str(config))
    assert by_language["glosses"] == expected["glosses"] and by_language["sentence"] == expected["sentence"]
    assert test_one_video.main(["--video_path", str(video), "--device", "cpu", "--model_path", str(published),
                                "--language", "csl-daily", "--config", str(config)]) == 2
    assert "preprocess/CSL-Daily/gloss_dict.npy does not exist" in capsys.readouterr().err
    # The web page's recogniser on the same frames, uploaded as a zip.
    upload = tmp_path / "clip.zip"
    with zipfile.ZipFile(upload, "w") as archive:
        for frame in sorted(video.glob("*.jpg")):
            archive.write(frame, frame.name)
    outcome = Recogniser(load_model(ours, "cpu"), Limits(), tmp_path).recognise(upload)
    assert outcome.result["glosses"] == expected["glosses"]
