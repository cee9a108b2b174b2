"""test_one_video.py and generate_cam.py end to end on a tiny STF-Net trained on one synthetic video.

The model is overfitted (about 100 Adam steps, a few seconds) to the sentence the synthetic signer
signs, so its decisions have wide margins: the same glosses must come out of the frame folder, a
lossless mp4 (bit-identical frames) and a lossy H.264 mp4 (frames a few grey levels off).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import generate_cam
import test_one_video
from inference.live import file_frames
from inference.recognize import prepare_input
from inference.video import load_frames, write_video
from tests.infer_support import TINY_CLI

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def assets(infer_assets) -> dict:
    """The tiny trained model's checkpoints and its video (tests/infer_support.py)."""
    return infer_assets


def _run_json(capsys, *argv: str) -> dict:
    """test_one_video.main with --json, parsed."""
    assert test_one_video.main([*argv, "--device", "cpu", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _error(capsys, module, *argv: str) -> str:
    """Run a CLI expecting the clean error exit (2): one error line, after notes if any; return it."""
    assert module.main([*argv, "--device", "cpu"]) == 2
    *notes, err = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("error: ") and all(line.startswith("note: ") for line in notes), notes + [err]
    return err


def test_folder_and_videos_give_the_same_glosses(assets, capsys):
    results = {name: _run_json(capsys, "--model_path", str(assets["ours"]), "--video_path", str(assets[name]))
               for name in ("folder", "lossless", "lossy")}
    for name, result in results.items():
        assert result["sentence"].split() == assets["sentence"], name
    assert results["folder"] == {**results["lossless"], "video": results["folder"]["video"],
                                 "reader": "images"}  # identical frames: identical spans and scores


def test_json_shape(assets, capsys):
    result = _run_json(capsys, "--model_path", str(assets["ours"]), "--video_path", str(assets["folder"]),
                       "--decode-mode", "beam", "--beam-width", "5")
    t = assets["num_frames"]
    assert result["num_frames"] == result["total_frames"] == t
    assert result["temporal_stride"] == 4 and result["output_steps"] == -(-t // 4)
    assert (result["decode"]["mode"], result["decode"]["beam_width"]) == ("beam", 5)
    glosses = result["glosses"]
    assert [g["gloss"] for g in glosses] == assets["sentence"]
    assert set(glosses[0]) == {"gloss", "position", "class_index", "steps", "frames", "source_frames",
                               "score", "log_prob"}
    previous_end = -1
    for k, g in enumerate(glosses):
        assert g["position"] == k
        first, last = g["steps"]
        assert previous_end < first <= last < result["output_steps"]  # ordered, disjoint spans
        previous_end = last
        assert g["frames"] == [first * 4, min(last * 4 + 3, t - 1)]
        assert g["source_frames"] == g["frames"]  # no sampling: sampled index = source index
        assert 0.0 < g["score"] <= 1.0 and g["log_prob"] <= 0.0


def test_plain_output_and_frame_sampling(assets, capsys):
    assert test_one_video.main(["--model_path", str(assets["ours"]), "--video_path", str(assets["folder"]),
                                "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == "output glosses: " + " ".join(assets["sentence"])
    result = _run_json(capsys, "--model_path", str(assets["ours"]), "--video_path", str(assets["lossless"]),
                       "--max_frames_num", "12")
    assert result["num_frames"] == 12 and result["total_frames"] == assets["num_frames"]
    picked = np.linspace(0, assets["num_frames"] - 1, 12).astype(int)
    for g in result["glosses"]:
        assert g["source_frames"] == [int(picked[g["frames"][0]]), int(picked[g["frames"][1]])]


def test_published_checkpoint_needs_dict_and_architecture(assets, capsys):
    base = ["--model_path", str(assets["published"]), "--video_path", str(assets["folder"])]
    result = _run_json(capsys, *base, "--dict_path", str(assets["dict"]), *TINY_CLI)
    assert result["sentence"].split() == assets["sentence"]
    err = _error(capsys, test_one_video, *base, "--dict_path", str(assets["dict"]), *TINY_CLI,
                 "--config", "config/phoenix2014-T.yaml")  # hierarchical attention off
    assert "does not fit the model" in err and "phoenix2014-T.yaml" in err and "csa." in err
    err = _error(capsys, test_one_video, *base, "--dict_path", str(assets["dict"]))  # resnet34 defaults
    assert "does not fit the model" in err and "hidden_size" in err and "--config" in err


def test_the_tool_says_when_a_checkpoint_loads_unverified(assets, capsys):
    video = ["--video_path", str(assets["folder"]), "--device", "cpu"]
    assert test_one_video.main(["--model_path", str(assets["ours"]), *video]) == 0
    assert "checksum" not in capsys.readouterr().err  # ours carries one, verified: nothing to say
    assert test_one_video.main(["--model_path", str(assets["published"]), *video,
                                "--dict_path", str(assets["dict"]), *TINY_CLI]) == 0
    err = capsys.readouterr().err
    assert f"note: {assets['published']} carries no checksum" in err and "cannot be verified" in err


def test_a_video_too_short_for_the_model_is_one_line(assets, capsys, tmp_path):
    def first_frames(count: int) -> list[str]:
        folder = tmp_path / f"first{count}"
        folder.mkdir()
        for path in sorted(assets["folder"].iterdir())[:count]:
            (folder / path.name).write_bytes(path.read_bytes())
        return ["--model_path", str(assets["ours"]), "--video_path", str(folder)]

    # K5 P2 K5 P2 pads 4 frames to 16 -> 12 -> 6 -> 2 -> 1: the last lift pool's norm needs 2.
    assert "the video has 1 frame;" in _error(capsys, test_one_video, *first_frames(1))
    assert "the video has 4 frames; this model's temporal stack ['K5', 'P2', 'K5', 'P2'] needs at least 5" \
        in _error(capsys, test_one_video, *first_frames(4))
    assert _run_json(capsys, *first_frames(5))["num_frames"] == 5


def test_vocabulary_size_mismatch(assets, capsys):
    err = _error(capsys, test_one_video, "--model_path", str(assets["ours"]), "--video_path",
                 str(assets["folder"]), "--dict_path", str(assets["small_dict"]))
    assert "32 classes" in err and "5 glosses" in err and "small_dict.npy" in err


def test_bad_inputs(assets, capsys, tmp_path):
    ours = ["--model_path", str(assets["ours"])]
    assert "video not found" in _error(capsys, test_one_video, *ours, "--video_path", str(tmp_path / "x.mp4"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    assert "cannot decode video" in _error(capsys, test_one_video, *ours, "--video_path", str(broken))
    (tmp_path / "empty").mkdir()
    assert "contains no images" in _error(capsys, test_one_video, *ours, "--video_path", str(tmp_path / "empty"))
    err = _error(capsys, test_one_video, "--model_path", str(tmp_path / "none.pt"), "--video_path",
                 str(assets["folder"]))
    assert "checkpoint not found" in err
    # a published checkpoint with no vocabulary and no preprocess/ folder to fall back on
    err = _error(capsys, test_one_video, "--model_path", str(assets["published"]), "--video_path",
                 str(assets["folder"]), "--language", "csl-daily", *TINY_CLI)
    assert "carries no vocabulary" in err or "--dict_path" in err


def test_gradcam_maps_per_frame(assets):
    from inference.explain import gloss_cams
    from inference.loading import load_model

    loaded = load_model(assets["ours"], "cpu", decode={"mode": "max"})
    prepared = prepare_input(load_frames(assets["folder"]).frames, loaded.kernel_sizes,
                             loaded.input_size, loaded.image_scale)
    rec, maps = gloss_cams(loaded, prepared, "conv2d.layer4", "all")
    assert rec.glosses == assets["sentence"] and sorted(maps) == list(range(len(rec.glosses)))
    for heat in maps.values():
        assert heat.shape == (assets["num_frames"], 56, 56)  # one map per input frame, input size
        assert torch.isfinite(heat).all() and (heat >= 0).all()
        assert float(heat.std()) > 0  # not constant


def test_generate_cam_cli_writes_frames_and_sheet(assets, capsys, tmp_path):
    out = tmp_path / "cam"
    assert generate_cam.main(["--model_path", str(assets["ours"]), "--video_path", str(assets["lossless"]),
                              "--gloss", "1", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    gloss = assets["sentence"][1]
    folder, sheet = out / f"gloss01_{gloss}", out / f"gloss01_{gloss}_sheet.png"
    assert str(sheet) in printed and str(folder) in printed
    jpgs = sorted(folder.glob("frame_*.jpg"))
    assert len(jpgs) == assets["num_frames"]
    assert cv2.imread(str(jpgs[0])).shape == (56, 56, 3)
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] > 112 and image.shape[1] > 112
    err = _error(capsys, generate_cam, "--model_path", str(assets["ours"]), "--video_path",
                 str(assets["folder"]), "--gloss", "9", "--out", str(out))
    assert f"has {len(assets['sentence'])} glosses" in err
    err = _error(capsys, generate_cam, "--model_path", str(assets["ours"]), "--video_path",
                 str(assets["folder"]), "--layer", "conv2d.layer7", "--out", str(out))
    assert "not found" in err and "conv2d.layer4" in err
    # Written maps are not replaced without --force, nor the input frames' folder ever.
    argv = ["--model_path", str(assets["ours"]), "--video_path", str(assets["lossless"]), "--gloss", "1"]
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    err = _error(capsys, generate_cam, *argv, "--out", str(out))
    assert f"gloss01_{gloss}" in err and "exists; pass --force" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    frames = {p: p.read_bytes() for p in Path(assets["folder"]).rglob("*") if p.is_file()}
    err = _error(capsys, generate_cam, "--model_path", str(assets["ours"]), "--video_path",
                 str(assets["folder"]), "--out", str(assets["folder"]))
    assert "is the input --video_path" in err
    assert {p: p.read_bytes() for p in Path(assets["folder"]).rglob("*") if p.is_file()} == frames
    assert generate_cam.main([*argv, "--out", str(out), "--force", "--device", "cpu"]) == 0


def test_scripts_run_as_commands(assets, repo_root):
    proc = subprocess.run([sys.executable, "test_one_video.py", "--model_path", str(assets["ours"]),
                           "--video_path", str(assets["folder"]), "--device", "cpu"],
                          cwd=repo_root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "output glosses: " + " ".join(assets["sentence"])


def test_language_model_options(assets, capsys, tmp_path):
    import warnings

    from decoding.arpa import write_arpa
    from decoding.build_lm import estimate_kneser_ney

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one-sentence corpus: fallback discounts
        write_arpa(estimate_kneser_ney([assets["sentence"]] * 3, 2), tmp_path / "lm.arpa")
    base = ("--model_path", str(assets["ours"]), "--video_path", str(assets["folder"]),
            "--decode-mode", "beam")
    plain = _run_json(capsys, *base)
    fused = _run_json(capsys, *base, "--lm-path", str(tmp_path / "lm.arpa"), "--lm-weight", "0.3")
    assert fused["decode"]["lm_path"] == str(tmp_path / "lm.arpa") and plain["decode"]["lm_path"] is None
    assert fused["sentence"] == plain["sentence"]  # the LM agrees with this well-recognised clip
    pruned = _run_json(capsys, *base, "--token-min-logp", "-5", "--beam_prune_logp", "-10")  # alias
    assert pruned == plain  # same keys (lm_path null); pyctcdecode's pruning keeps this clip's glosses
    err = _error(capsys, test_one_video, *base[:4], "--decode-mode", "max", "--lm-path",
                 str(tmp_path / "lm.arpa"))
    assert "needs decode.mode: beam" in err
    err = _error(capsys, test_one_video, *base, "--lm-path", str(tmp_path / "none.arpa"))
    assert "decode.lm_path" in err and "none.arpa" in err


@pytest.fixture
def fast_video(assets, tmp_path) -> Path:
    """The same signing filmed at 50 fps: each frame of the 25 fps video twice (lossless)."""
    path = tmp_path / "filmed at 50 fps.mp4"
    write_video(path, np.repeat(load_frames(assets["folder"], size=None).frames, 2, axis=0), fps=50)
    return path


def test_fps_resamples_a_faster_video_to_the_models_rate(assets, fast_video, capsys):
    assert np.array_equal(load_frames(fast_video, fps=25).frames, load_frames(assets["lossless"]).frames)
    model = ["--model_path", str(assets["ours"])]
    at_25 = _run_json(capsys, *model, "--video_path", str(assets["lossless"]))
    resampled = _run_json(capsys, *model, "--video_path", str(fast_video), "--fps", "25")
    assert resampled == {**at_25, "video": str(fast_video)}  # same frames: same spans and scores
    as_filmed = _run_json(capsys, *model, "--video_path", str(fast_video))
    assert as_filmed["num_frames"] == 2 * assets["num_frames"]  # without --fps: the file's own frames
    streamed = _run_json(capsys, *model, "--video_path", str(fast_video), "--fps", "25", "--stream",
                         "--speed", "0", "--decode-mode", "max")
    assert streamed["frames"] == assets["num_frames"] and streamed["sentence"].split() == assets["sentence"]


def test_fps_on_a_frame_folder_or_out_of_range_is_refused(assets, capsys):
    err = _error(capsys, test_one_video, "--model_path", str(assets["ours"]), "--video_path",
                 str(assets["folder"]), "--fps", "25")
    assert "--fps 25" in err and str(assets["folder"]) in err and "drop --fps" in err
    with pytest.raises(SystemExit):
        test_one_video.main(["--model_path", str(assets["ours"]), "--video_path", str(assets["lossless"]),
                             "--fps", "0"])
    assert "expected a frame rate" in capsys.readouterr().err


def test_a_phone_video_streams_upright_as_it_is_read_offline(tmp_path):
    stored = np.zeros((4, 32, 48, 3), np.uint8)
    stored[:, :, :8] = 255  # a band on the left of the stored (landscape) frame
    path = tmp_path / "portrait.mp4"
    write_video(path, stored, rotation=90)  # a phone's portrait recording
    offline = load_frames(path, size=None).frames
    streamed = np.stack([f.image for f in file_frames(path)[0]])
    assert offline.shape == (4, 48, 32, 3) and np.array_equal(streamed, offline)
    assert offline[0, -6:].mean() > 200 and offline[0, :20].mean() < 40  # the band at the bottom
