"""VAC and CorrNet through the commands STF-Net uses, from their configs on the tiny synthetic set:
main.py trains, resumes and tests; test_one_video (with a gloss LM), Grad-CAM, the page's
recogniser and export.py run on the checkpoint it writes."""
from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import pytest

import export
import generate_cam
import main as main_module
import test_one_video
from decoding.arpa import write_arpa
from decoding.build_lm import estimate_kneser_ney
from inference.loading import load_model
from inference.web import Limits, Recogniser
from tests.train_support import REPO_ROOT, make_tiny_dataset, tiny_config, write_config
from utils.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

MODELS = {"vac": "vac_network.VACModel", "corrnet": "corrnet_network.CorrNetModel"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


def family_config(data: dict, work: Path, name: str, **overrides) -> dict:
    """The tiny run of tests/train_support.py on config/<name>.yaml's recipe (model and losses)."""
    cfg = tiny_config(data, work, **overrides)
    cfg.update(base=str(REPO_ROOT / "config" / f"{name}.yaml"), model=MODELS[name])
    # Plain linear classifiers: the tool checks below set the classifier's bias.
    cfg["model_args"] = {"base_width": 8, "hidden_size": 16, "channels_last": False,
                         "weight_norm": False, "share_classifier": False, "pretrained": None}
    return cfg


def one_gloss_checkpoint(source: Path, target: Path) -> str:
    """`source` with its classifier biased to gloss 1 on every frame: a model that recognises a
    sentence (Grad-CAM and the LM need one) without minutes of training. Returns the gloss."""
    ckpt = load_checkpoint(source)
    bias = ckpt["model_state_dict"]["classifier.bias"]
    bias.zero_()
    bias[1] = 50.0
    save_checkpoint(target, ckpt)
    return next(g for g, (index, _) in ckpt["gloss_dict"].items() if index == 1)


def sentence_of(capsys, *argv: str) -> str:
    """The sentence test_one_video.py --json prints."""
    capsys.readouterr()  # what earlier commands printed
    assert test_one_video.main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["sentence"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_train_resume_test_and_the_tools(name, data, tmp_path, capsys):
    work = tmp_path / "work"
    cfg = family_config(data, work, name, num_epoch=1, eval_splits=["dev"], test_best=False)
    main_module.main(["--config", str(write_config(cfg, tmp_path / "one.yaml"))])
    cfg["num_epoch"] = 2  # the same work dir: resumes from last.pt
    main_module.main(["--config", str(write_config(cfg, tmp_path / "two.yaml"))])
    rows = list(csv.DictReader(open(work / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert [k for k in rows[0] if k.startswith("loss_")] == ["loss_SeqCTC", "loss_ConvCTC", "loss_Dist"]
    summary = main_module.main(["--config", str(tmp_path / "two.yaml"), "--phase", "test",
                                "--load-weights", str(work / "best_model.pt")])
    assert "dev" in json.dumps(summary, default=str)

    ckpt = tmp_path / "one_gloss.pt"
    gloss = one_gloss_checkpoint(work / "last.pt", ckpt)
    video = next(p.parent for p in sorted(data["raw"].rglob("*.png")))
    base = ["--model_path", str(ckpt), "--video_path", str(video), "--device", "cpu"]
    assert sentence_of(capsys, *base) == gloss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one-sentence corpus: fallback discounts
        write_arpa(estimate_kneser_ney([[gloss]] * 3, 2), tmp_path / "lm.arpa")
    assert sentence_of(capsys, *base, "--decode-mode", "beam", "--lm-path",
                       str(tmp_path / "lm.arpa")) == gloss

    assert generate_cam.main([*base, "--gloss", "0", "--out", str(tmp_path / "cam")]) == 0
    assert list((tmp_path / "cam").glob("gloss00_*_sheet.png"))
    recogniser = Recogniser(load_model(ckpt, "cpu"), Limits(), tmp_path)
    outcome = recogniser.recognise(shutil.make_archive(str(tmp_path / "upload"), "zip", video))
    overlays, sheet = recogniser.explain(outcome, 0)
    assert outcome.result["sentence"] == gloss and overlays and sheet.ndim == 3

    capsys.readouterr()
    assert test_one_video.main([*base, "--stream"]) == 2  # STF-Net's streaming pieces only
    assert "drop --stream" in capsys.readouterr().err

    onnx = tmp_path / "model.onnx"
    assert export.main(["--model_path", str(ckpt), "--out", str(onnx)]) == 0
    assert sentence_of(capsys, "--model_path", str(onnx), "--video_path", str(video)) == gloss
