"""Sizes and values a checkpoint's config or a dataset brings are checked before they are used:
each crafted or damaged case is one `error:` line (issue 25, items 7 and 8)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from PIL import Image

import main as main_module
import test_one_video
from model_building import construct_model
from slr_network import SLRModel
from tests.train_support import make_tiny_dataset, tiny_config, write_config
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import ConfigError

CRAFTED = {  # what a crafted or stale checkpoint says -> what the one line names
    "base_width 10**6": (lambda c: c["model_args"].update(base_width=10**6), "GiB of parameters"),
    "aux_dim 10**9": (lambda c: c["model_args"].update(aux_dim=10**9), "GiB of parameters"),
    "c2d_type resnet1000": (lambda c: c["model_args"].update(c2d_type="resnet1000"), "resnet1000"),
    "conv_type 99": (lambda c: c["model_args"].update(conv_type=99), "conv_type"),
    "input_size -5": (lambda c: c["config"]["feeder_args"].update(input_size=-5), "input_size"),
    "image_scale abc": (lambda c: c["config"]["feeder_args"].update(image_scale="abc"), "image_scale"),
    "decode mode": (lambda c: c["config"].update(decode={"mode": "zzz"}), "decode.mode"),
    "decode a list": (lambda c: c["config"].update(decode=[1, 2]), "decode section"),
    "gloss dict": (lambda c: c.update(gloss_dict={"A": "x", "B": [1, 0]}), "[index, count]"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_crafted_checkpoint_config_is_one_error_line(infer_assets, tmp_path, capsys, case):
    ckpt = load_checkpoint(infer_assets["ours"])
    ckpt = {k: v for k, v in copy.deepcopy(ckpt).items() if k != "checksum"}
    ckpt["config"].setdefault("feeder_args", {})
    edit, named = CRAFTED[case]
    edit(ckpt)
    path = tmp_path / "crafted.pt"
    save_checkpoint(path, ckpt)  # a valid checksum: it guards against damage, not against edits
    assert test_one_video.main(["--model_path", str(path), "--video_path", str(infer_assets["folder"]),
                                "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0], err


def test_the_parameter_ceiling_estimates_without_allocating_and_can_be_raised():
    args = {"num_classes": 10, "c2d_type": "resnet18", "conv_type": 2, "hidden_size": 16,
            "base_width": 4, "aux_dim": 8, "pretrained": None}
    model = construct_model(SLRModel, args, "model_args")
    real = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 2**30
    # The meta-device estimate is the real model's bytes: refused just below them, built just above.
    with pytest.raises(ConfigError, match="GiB of parameters, more than --max-param-gib"):
        construct_model(SLRModel, args, "model_args", max_param_gib=real * 0.999)
    assert next(construct_model(SLRModel, args, "model_args", real * 1.001).parameters()).device.type == "cpu"
    with pytest.raises(ConfigError, match="GiB of parameters"):  # terabytes: refused at once
        construct_model(SLRModel, {**args, "hidden_size": 10**8}, "model_args")


def test_a_frame_of_another_size_in_a_later_video_names_video_and_frame(tmp_path, capsys):
    data = make_tiny_dataset(tmp_path / "data")
    info = np.load(data["pre"] / "dev_info.npy", allow_pickle=True).item()
    last = info[max(k for k in info if isinstance(k, int))]
    frames = sorted((data["raw"] / "features" / "fullFrame-64x64px" / "dev" / last["fileid"]).rglob("*.png"))
    middle = frames[len(frames) // 2]
    Image.new("RGB", (48, 40)).save(middle)
    cfg = write_config(tiny_config(data, tmp_path / "feat", phase="features"), tmp_path / "c.yaml")
    assert main_module.cli(["--config", str(cfg)]) == 2  # reads every frame of every video
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: video {last['fileid']}: frame {middle}"), err
    assert "is 48x40 pixels, not 64x64" in err[0]
