"""export.py: the ONNX graph gives the PyTorch model's log-probabilities and glosses, and
test_one_video.py runs it with onnxruntime (tiny trained model of tests/infer_support.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import export
import test_one_video
from dataset.collate import pad_collate
from inference.loading import load_model
from inference.recognize import decode_sentence, prepare_input
from inference.video import load_frames

pytest.importorskip("onnxruntime", reason="onnxruntime is in requirements.txt; install it to run the export tests")
pytestmark = pytest.mark.usefixtures("single_thread")

TOLERANCE = 1e-4  # max |log p| difference, float32 graph vs PyTorch (measured about 1e-6)


@pytest.fixture(scope="module")
def exported(infer_assets, tmp_path_factory) -> dict:
    """The tiny checkpoint exported once: the .onnx path and both loaded models."""
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert export.main(["--model_path", str(infer_assets["ours"]), "--out", str(out)]) == 0
    return {"onnx": out, "torch_model": load_model(infer_assets["ours"], "cpu"),
            "onnx_model": load_model(out)}


def test_export_writes_graph_and_vocabulary(exported, infer_assets):
    meta = json.loads(exported["onnx"].with_suffix(".vocab.json").read_text(encoding="utf-8"))
    gloss_dict = exported["torch_model"].gloss_dict
    assert meta["blank"] == 0 and len(meta["glosses"]) == len(gloss_dict) + 1
    assert all(meta["glosses"][v[0]] == g for g, v in gloss_dict.items())
    assert exported["onnx_model"].kernel_sizes == exported["torch_model"].kernel_sizes


@pytest.mark.parametrize("lengths", [(9,), (23,), (40,), (40, 17)])  # a batch of two lengths too
def test_onnx_matches_pytorch(exported, infer_assets, lengths):
    frames = load_frames(infer_assets["folder"]).frames
    pt, ox = exported["torch_model"], exported["onnx_model"]
    clips = [prepare_input(frames[:n], pt.kernel_sizes, pt.input_size, pt.image_scale) for n in lengths]
    video, length, *_ = pad_collate([(c.video[0], torch.zeros(0), {}) for c in clips], pt.kernel_sizes)
    ref, ref_len = pt.log_probs(video, length)
    got, got_len = ox.log_probs(video, length)
    assert torch.equal(ref_len, got_len) and got.shape == ref.shape
    for b, steps in enumerate(ref_len.tolist()):  # steps past a length are padding, not compared
        assert float((got[b, :steps] - ref[b, :steps]).abs().max()) < TOLERANCE
        assert decode_sentence(ox, got[b, :steps]) == decode_sentence(pt, ref[b, :steps])


def test_test_one_video_runs_the_onnx_file(exported, infer_assets, capsys):
    def run(model) -> dict:
        assert test_one_video.main(["--model_path", str(model), "--video_path",
                                    str(infer_assets["lossless"]), "--json", "--device", "cpu"]) == 0
        return json.loads(capsys.readouterr().out)

    ours, onnx = run(infer_assets["ours"]), run(exported["onnx"])
    assert onnx["sentence"].split() == infer_assets["sentence"]
    for a, b in zip(ours["glosses"], onnx["glosses"]):
        assert a["frames"] == b["frames"] and a["steps"] == b["steps"]
        assert np.isclose(a["score"], b["score"], atol=1e-4)


def test_onnx_errors(exported, infer_assets, tmp_path, capsys):
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(exported["onnx"].read_bytes())
    argv = ["--video_path", str(infer_assets["folder"]), "--device", "cpu"]
    assert test_one_video.main(["--model_path", str(lonely), *argv]) == 2
    assert "lonely.vocab.json not found" in capsys.readouterr().err
    assert test_one_video.main(["--model_path", str(exported["onnx"]), "--dict_path", "x.npy", *argv]) == 2
    assert "drop dict_path" in capsys.readouterr().err
    assert export.main(["--model_path", str(exported["onnx"]), "--out", str(tmp_path / "again.onnx")]) == 2
    assert "already exported" in capsys.readouterr().err
    from inference.explain import gloss_cams

    clip = prepare_input(load_frames(infer_assets["folder"]).frames, ["K5", "P2", "K5", "P2"], 224, 0.25)
    with pytest.raises(ValueError, match="Grad-CAM needs the PyTorch checkpoint"):
        gloss_cams(exported["onnx_model"], clip)
