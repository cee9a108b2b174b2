"""A checkpoint's or config's `model` / `model_args` choose among registered classes only: the
attacks of issue 18 (torch.hub.load of a local hubconf.py, logging.basicConfig with a filename,
importing an arbitrary module) run nothing in any tool and end in one `error:` line."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import app
import export
import generate_cam
import main as main_module
import test_one_video
from model_building import model_kwargs
from slr_network import MODELS, SLRModel
from tests.train_support import REPO_ROOT
from utils.config import default_config
from utils.errors import ConfigError
from utils.registry import Registry, check_plain_args

EVIL_MODULE = "stfnet_crafted_module_xyz"
GLOSS_DICT = {"A": [1, 3], "B": [2, 2]}


def attacks(root: Path) -> dict[str, tuple[str, dict, Path]]:
    """name -> (model, model_args, marker file that exists iff the attack ran)."""
    hub = root / "hub"
    hub.mkdir()
    (hub / "hubconf.py").write_text(f"open({str(root / 'hub_ran')!r}, 'w').write('ran')\n"
                                    f"def evil(**kwargs):\n    return None\n")
    plugins = root / "plugins"
    plugins.mkdir()
    (plugins / f"{EVIL_MODULE}.py").write_text(
        f"open({str(root / 'import_ran')!r}, 'w').write('ran')\nclass Model:\n"
        f"    def __init__(self, **kwargs):\n        pass\n")
    return {
        "hub": ("torch.hub.load", {"repo_or_dir": str(hub), "model": "evil", "source": "local"},
                root / "hub_ran"),
        "logging": ("logging.basicConfig", {"filename": str(root / "logging_ran"), "level": 10},
                    root / "logging_ran"),
        "import": (f"{EVIL_MODULE}.Model", {"num_classes": 3}, root / "import_ran"),
    }


@pytest.fixture
def crafted(tmp_path, monkeypatch):
    """Attack name -> (crafted checkpoint, crafted config file, marker); a gloss dict on disk."""
    found = attacks(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))  # the module would be importable
    np.save(tmp_path / "gloss_dict.npy", GLOSS_DICT)
    (tmp_path / "clip").mkdir()
    for i in range(4):  # a valid video (a folder of frames), so that only the model can fail
        cv2.imwrite(str(tmp_path / "clip" / f"{i:03d}.png"), np.full((32, 32, 3), 60 * i, np.uint8))
    out = {}
    for name, (model, args, marker) in found.items():
        ckpt = tmp_path / f"{name}.pt"
        torch.save({"model_state_dict": {"classifier.weight": torch.zeros(1024, 3)},
                    "gloss_dict": GLOSS_DICT, "config": {"model": model, "model_args": args},
                    "model_args": args, "epoch": 0}, ckpt)
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({
            "base": str(REPO_ROOT / "config" / "baseline.yaml"), "work_dir": str(tmp_path / "work"),
            "device": "cpu", "model": model, "model_args": args,
            "dataset_info": {"dataset_root": str(tmp_path), "dict_path": str(tmp_path / "gloss_dict.npy")}}))
        out[name] = (ckpt, cfg, marker)
    return out


TOOLS = {
    "test_one_video": lambda ckpt, cfg, tmp: test_one_video.main(
        ["--model_path", str(ckpt), "--video_path", str(tmp / "clip")]),
    "generate_cam": lambda ckpt, cfg, tmp: generate_cam.main(
        ["--model_path", str(ckpt), "--video_path", str(tmp / "clip"), "--out", str(tmp / "cam")]),
    "export": lambda ckpt, cfg, tmp: export.main(["--model_path", str(ckpt), "--out", str(tmp / "m.onnx")]),
    "app": lambda ckpt, cfg, tmp: app.main(["--model_path", str(ckpt)]),
    # main.py builds the model from its config file, which the attacker wrote here.
    "main --load-weights": lambda ckpt, cfg, tmp: main_module.cli(
        ["--config", str(cfg), "--phase", "test", "--load-weights", str(ckpt)]),
    "main --load-checkpoints": lambda ckpt, cfg, tmp: main_module.cli(
        ["--config", str(cfg), "--load-checkpoints", str(ckpt)]),
    "main train": lambda ckpt, cfg, tmp: main_module.cli(["--config", str(cfg)]),
}


@pytest.mark.parametrize("attack", ["hub", "logging", "import"])
@pytest.mark.parametrize("tool", list(TOOLS))
def test_crafted_model_runs_nothing_in_any_tool(crafted, tmp_path, capsys, tool, attack):
    ckpt, cfg, marker = crafted[attack]
    assert TOOLS[tool](ckpt, cfg, tmp_path) == 2
    *notes, err = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("error: ") and "not a registered model" in err, err
    # At most the note that the crafted file carries no checksum (the single-video tools say so).
    assert all(line.startswith("note: ") and "carries no checksum" in line for line in notes), notes
    assert not marker.exists()
    assert EVIL_MODULE not in sys.modules
    assert not (tmp_path / "work").exists()  # refused before the work dir was made


def test_published_names_stay_registered():
    """Configs and checkpoints of the project and the original name these classes."""
    assert MODELS.get("slr_network.SLRModel") is SLRModel
    from training.data import FEEDERS

    assert FEEDERS.get(default_config()["feeder"]).__name__ == "BaseFeeder"


def test_feeder_is_chosen_from_the_registry_only():
    from training.data import FEEDERS

    with pytest.raises(ConfigError, match="key 'feeder' is 'logging.basicConfig', not a registered feeder"):
        FEEDERS.get("logging.basicConfig")


def test_registering_another_class_under_a_taken_name_fails():
    registry = Registry("model", "model")

    class A:
        pass

    registry.register(A, name="x")
    registry.register(A, name="x")  # the same class again (a module imported twice) is fine
    with pytest.raises(ValueError, match="already registered"):
        registry.register(type("B", (), {}), name="x")


@pytest.mark.parametrize("args, message", [
    ({"c2d_type": "resnet18", "conv_type": 2, "kwargs": {"x": 1}}, "model_args.kwargs' must be a plain value"),
    ({"c2d_type": "resnet18", "conv_type": 2, "extra": 1}, "unknown key 'model_args.extra'"),
    ({"c2d_type": ["resnet18", {"a": 1}], "conv_type": 2}, "model_args.c2d_type' must be a plain value"),
    ({"c2d_type": "resnet18", "conv_type": "2"}, "model_args.conv_type' expects an int"),
    ({"c2d_type": "resnet18", "conv_type": 2, "loss_weights": {}}, "model_args.loss_weights' is not"),
])
def test_model_args_must_be_plain_values_of_the_constructor(args, message):
    cfg = {**default_config(), "model_args": args}
    with pytest.raises(ConfigError, match=message):
        model_kwargs(cfg, SLRModel, 3)


def test_a_forwarding_subclass_is_checked_against_its_base():
    class Forwarding(SLRModel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    check_plain_args(Forwarding, {"c2d_type": "resnet18", "hidden_size": 8}, "model_args")
    with pytest.raises(ConfigError, match="unknown key 'model_args.kwargs'"):
        check_plain_args(Forwarding, {"kwargs": 1}, "model_args")
