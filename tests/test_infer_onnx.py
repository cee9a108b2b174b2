"""export.py: the ONNX graph gives the PyTorch model's log-probabilities and glosses, and
test_one_video.py runs it with onnxruntime (tiny trained model of tests/infer_support.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import export
import test_one_video
from dataset.collate import pad_collate
from inference.loading import load_model
from inference.network import FramesToCTC
from inference.recognize import decode_sentence, prepare_input
from inference.video import load_frames
from slr_network import SLRModel
from tests.infer_support import TINY_ARGS, runner_listing
from utils.checkpoint import save_checkpoint

pytest.importorskip("onnxruntime", reason="onnxruntime is in requirements.txt; install it to run the export tests")
pytestmark = pytest.mark.usefixtures("single_thread")

TOLERANCE = 1e-4  # max |log p| difference, float32 graph vs PyTorch (measured about 1e-6)


@pytest.fixture(scope="module")
def exported(infer_assets, tmp_path_factory) -> dict:
    """The tiny checkpoint exported once per input kind: the .onnx paths and the loaded models."""
    folder = tmp_path_factory.mktemp("onnx")
    out, flt = folder / "tiny.onnx", folder / "tiny_float.onnx"
    assert export.main(["--model_path", str(infer_assets["ours"]), "--out", str(out)]) == 0
    assert export.main(["--model_path", str(infer_assets["ours"]), "--out", str(flt),
                        "--input", "float"]) == 0
    return {"onnx": out, "float_onnx": flt, "torch_model": load_model(infer_assets["ours"], "cpu"),
            "onnx_model": load_model(out), "float_model": load_model(flt)}


def test_export_writes_graph_and_vocabulary(exported, infer_assets):
    meta = json.loads(exported["onnx"].with_suffix(".vocab.json").read_text(encoding="utf-8"))
    gloss_dict = exported["torch_model"].gloss_dict
    assert meta["blank"] == 0 and len(meta["glosses"]) == len(gloss_dict) + 1
    assert all(meta["glosses"][v[0]] == g for g, v in gloss_dict.items())
    assert exported["onnx_model"].kernel_sizes == exported["torch_model"].kernel_sizes


def pytorch_path(loaded, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, T', C) log-probs and (1,) lengths as test_one_video.py computes them with PyTorch."""
    prepared = prepare_input(frames, loaded.kernel_sizes, loaded.input_size, loaded.image_scale)
    return loaded.log_probs(prepared.video, prepared.length)


@pytest.mark.parametrize("num_frames", [5, 9, 14, 23, 25])  # every remainder modulo the stride 4
def test_frames_graph_prepares_its_input_like_the_feeder(exported, infer_assets, num_frames):
    """uint8 frames in: the module is bit-identical to the feeder's transform + collate path,
    and its ONNX graph matches within tolerance with the same best path."""
    frames = load_frames(infer_assets["folder"]).frames[:num_frames]
    pt = exported["torch_model"]
    ref, ref_len = pytorch_path(pt, frames)
    module = FramesToCTC(pt.model, pt.kernel_sizes, pt.frame_size, pt.input_size, pt.image_scale)
    with torch.inference_mode():
        mod, mod_len, mod_ids = module(torch.from_numpy(frames))
    assert torch.equal(mod, ref) and torch.equal(mod_len, ref_len)
    session = exported["onnx_model"].runner.session
    got, got_len, ids = session.run(None, {"frames": frames})
    assert got.shape == tuple(ref.shape) and got_len.tolist() == ref_len.tolist()
    assert float(np.abs(got - ref.numpy()).max()) < TOLERANCE
    assert ids.dtype == np.int64 and np.array_equal(ids, ref.argmax(-1).numpy())


@pytest.mark.parametrize("size, scale, worst", [((256, 256), 0.25, 0), ((224, 224), 0.5, 0),
                                               ((260, 210), 0.3, 1), ((48, 56), 1.0, 0)])
def test_frames_graph_input_equals_the_feeders(size, scale, worst):
    """The graph's crop, rescale, normalisation and padding against prepare_input on random
    frames: equal for the configs' scales (1, 1/2, 1/4); bicubic within 1 grey level of cv2's
    fixed-point INTER_CUBIC otherwise."""
    frames = np.random.default_rng(0).integers(0, 256, (6, size[1], size[0], 3), dtype=np.uint8)
    kernel_sizes = ["K5", "P2", "K5", "P2"]
    ref = prepare_input(frames, kernel_sizes, 224 if size[0] > 100 else 48, scale)
    module = FramesToCTC(torch.nn.Identity(), kernel_sizes, size, 224 if size[0] > 100 else 48, scale)
    video, length = module.prepare(torch.from_numpy(frames))
    assert video.shape == ref.video.shape and torch.equal(length, ref.length)
    assert float((video - ref.video).abs().max()) * 127.5 <= worst + 1e-3


@pytest.mark.parametrize("lengths", [(9,), (23,), (40,), (40, 17)])  # a batch of two lengths too
def test_float_graph_matches_pytorch(exported, infer_assets, lengths):
    frames = load_frames(infer_assets["folder"]).frames
    pt, ox = exported["torch_model"], exported["float_model"]
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

    ours = run(infer_assets["ours"])
    for graph in (exported["onnx"], exported["float_onnx"]):
        onnx = run(graph)
        assert onnx["sentence"].split() == infer_assets["sentence"]
        for a, b in zip(ours["glosses"], onnx["glosses"]):
            assert a["frames"] == b["frames"] and a["steps"] == b["steps"]
            assert np.isclose(a["score"], b["score"], atol=1e-4)


def test_export_never_replaces_its_input_or_an_existing_file(infer_assets, tmp_path, capsys):
    model = tmp_path / "best.pt"
    model.write_bytes(infer_assets["ours"].read_bytes())
    (tmp_path / "m.vocab.json").write_text('{"mine": 1}')
    (tmp_path / "folder.onnx").mkdir()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    for out, said in ((model, "is the input --model_path"), (tmp_path / "m.onnx", "m.vocab.json exists; pass --force"),
                      (tmp_path / "folder.onnx", "is a folder")):
        assert export.main(["--model_path", str(model), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


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
    clip = prepare_input(load_frames(infer_assets["folder"]).frames, ["K5", "P2", "K5", "P2"], 224, 0.25)
    with pytest.raises(ValueError, match="takes decoded uint8 frames"):
        exported["onnx_model"].log_probs(clip.video, clip.length)
    from inference.explain import gloss_cams

    with pytest.raises(ValueError, match="Grad-CAM needs the PyTorch checkpoint"):
        gloss_cams(exported["onnx_model"], clip)


# The README's runner, run as a stranger would: no torch, no package of this repository.
BLOCKED = ("torch", "torchvision", "utils", "dataset", "modules", "inference", "preprocess",
           "evaluation", "slr_network", "seq_scripts", "export", "test_one_video", "tests")
NO_REPO = f'''import importlib.abc, runpy, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is not available to the README's runner")
sys.meta_path.insert(0, Blocker())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def run_without_repo(tmp_path, script: str, *args: str) -> subprocess.CompletedProcess:
    """`script` in a fresh interpreter outside the repository, torch and its packages unimportable."""
    (tmp_path / "no_repo.py").write_text(NO_REPO, encoding="utf-8")
    (tmp_path / "script.py").write_text(script, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "no_repo.py", "script.py", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def untrained(infer_assets, tmp_path_factory) -> dict:
    """A random-weight tiny model (diffuse outputs: beam and greedy paths differ) and its export."""
    folder = tmp_path_factory.mktemp("untrained")
    trained = torch.load(infer_assets["ours"], map_location="cpu", weights_only=False)
    torch.manual_seed(1)
    model = SLRModel(len(trained["gloss_dict"]) + 1, **TINY_ARGS)
    save_checkpoint(folder / "random.pt", {**trained, "model_state_dict": model.state_dict()})
    assert export.main(["--model_path", str(folder / "random.pt"), "--out", str(folder / "random.onnx")]) == 0
    return {"pt": folder / "random.pt", "onnx": folder / "random.onnx"}


def test_readme_runner_cannot_import_torch(tmp_path):
    done = run_without_repo(tmp_path, "import numpy, cv2, onnxruntime\nimport torch\n")
    assert done.returncode != 0 and "torch is not available to the README's runner" in done.stderr


@pytest.mark.parametrize("which", ["trained", "untrained"])
@pytest.mark.parametrize("mode", ["beam", "greedy"])
def test_readme_runner_gives_test_one_videos_glosses(exported, untrained, infer_assets, repo_root,
                                                     tmp_path, capsys, which, mode):
    checkpoint, graph = (infer_assets["ours"], exported["onnx"]) if which == "trained" else \
        (untrained["pt"], untrained["onnx"])
    video = str(infer_assets["lossless"])
    done = run_without_repo(tmp_path, runner_listing(repo_root), str(graph), video, mode)
    assert done.returncode == 0, done.stderr
    assert test_one_video.main(["--model_path", str(checkpoint), "--video_path", video, "--device",
                                "cpu", "--decode-mode", "beam" if mode == "beam" else "max"]) == 0
    expected = capsys.readouterr().out.strip().removeprefix("output glosses: ")
    assert done.stdout.strip() == ("" if expected == "(none)" else expected)
    if which == "trained":
        assert expected.split() == infer_assets["sentence"]


def test_int8_export_agrees_with_fp32(exported, infer_assets, tmp_path, capsys):
    """export.py --quantize int8: int8 convolutions calibrated on the fixture's videos; the same
    best path and glosses as fp32 on the fixture video, log-probs close."""
    out = tmp_path / "tiny.int8.onnx"
    argv = ["--model_path", str(infer_assets["ours"]), "--out", str(out), "--quantize", "int8"]
    err = (export.main(argv), capsys.readouterr().err)[1]
    assert "--calibration" in err and "fullFrame-256x256px/train for PHOENIX" in err
    assert "<root>/features/fullFrame-256x256px (CSL)" in err  # CSL has no split folders
    assert export.main([*argv, "--calibration", str(tmp_path / "none")]) == 2
    assert "no videos" in capsys.readouterr().err
    assert export.main([*argv, "--calibration", str(infer_assets["root"])]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}")
    meta = json.loads(out.with_name("tiny.int8.vocab.json").read_text(encoding="utf-8"))
    assert meta["quantized"] == "int8, calibrated on 3 videos"  # frames/, lossless.mp4, lossy.mp4
    import onnx

    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    frames = load_frames(infer_assets["folder"]).frames
    fp32, _, fp32_ids = exported["onnx_model"].runner.session.run(None, {"frames": frames})
    int8, _, int8_ids = load_model(out).runner.session.run(None, {"frames": frames})
    assert np.array_equal(int8_ids, fp32_ids)
    assert float(np.abs(int8 - fp32).max()) < 1.0  # measured 0.01-0.3 on the fixture's videos
    assert test_one_video.main(["--model_path", str(out), "--video_path",
                                str(infer_assets["lossless"]), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.split()[2:] == infer_assets["sentence"]
