"""config/baseline.yaml is the one source of the defaults: a change there reaches main.py, the
tools and the page; sections are complete typed objects; keys nothing read are refused by name."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import main
import test_one_video
from dataset.feeder_options import FeederOptions
from decoding.config import DecodeConfig
from inference.cli import add_model_arguments, load_model_from_args
from inference.loading import model_config
from inference.web import Limits, Recogniser
from model_building import build_model
from tests.infer_support import TINY_CLI
from training.state import StepOptions
from utils.config import RECIPE, ConfigError, default_config, resolve_config


@pytest.fixture
def beam_width_7(tmp_path, monkeypatch) -> Path:
    """config/baseline.yaml with one edit, decode.beam_width: 7, in place of the real file."""
    edited = tmp_path / "baseline.yaml"
    edited.write_text(RECIPE.read_text().replace("  beam_width: 10", "  beam_width: 7", 1))
    assert yaml.safe_load(edited.read_text())["decode"]["beam_width"] == 7
    monkeypatch.setattr("utils.config.RECIPE", edited)
    return edited


def test_a_beam_width_changed_in_baseline_yaml_reaches_main_the_tools_and_the_page(
        beam_width_7, infer_assets, capsys, tmp_path):
    cfg, _ = resolve_config([], main.parser())  # what main.py runs with
    assert DecodeConfig.from_mapping(cfg["decode"]).beam_width == 7
    assert DecodeConfig.recipe().beam_width == 7  # tune_lm.py, exported files, bench/decode.py
    # A weights-only checkpoint takes its decoding from the recipe: test_one_video.py ...
    argv = ["--model_path", str(infer_assets["published"]), "--dict_path", str(infer_assets["dict"]),
            *TINY_CLI, "--device", "cpu"]
    assert test_one_video.main([*argv, "--video_path", str(infer_assets["lossless"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decode"]["beam_width"] == 7
    # ... and app.py's page and endpoint (the same options, the same model loader).
    import argparse

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    loaded = load_model_from_args(parser.parse_args(argv))
    outcome = Recogniser(loaded, Limits(), tmp_path).recognise(infer_assets["lossless"])
    assert outcome.result["decode"]["beam_width"] == 7


def test_every_section_with_defaults_is_complete_in_baseline_yaml():
    recipe = default_config()
    assert FeederOptions.recipe() == FeederOptions.from_mapping(recipe["feeder_args"])
    assert StepOptions.recipe().log_interval == recipe["log_interval"]
    with pytest.raises(ConfigError, match="lacks feeder_args.flip_prob"):
        FeederOptions.from_mapping({k: v for k, v in recipe["feeder_args"].items() if k != "flip_prob"})
    with pytest.raises(ConfigError, match=r"unknown key 'feeder_args.flip_prop'.*'flip_prob'"):
        FeederOptions.recipe(flip_prop=0.0)
    with pytest.raises(ConfigError, match="'feeder_args.temporal_min_len' expects an int"):
        FeederOptions.recipe(temporal_min_len="long")


@pytest.mark.parametrize("key", ["feeder_args.num_gloss", "feeder_args.drop_ratio", "model_args.use_bn"])
def test_keys_nothing_read_are_refused_naming_them(key):
    with pytest.raises(ConfigError, match=f"key '{key}' was removed"):
        resolve_config(["--set", f"{key}=1"])


@pytest.mark.parametrize("config", ["baseline", "vac", "corrnet"])
def test_old_checkpoint_configs_with_use_bn_still_build(config):
    # Checkpoints of earlier versions (and the original's configs) carry model_args.use_bn: 1.
    saved = resolve_config(["--config", f"config/{config}.yaml"])[0]
    saved["model_args"] = {**saved["model_args"], "use_bn": 1, "pretrained": None}
    cfg = model_config(saved)
    assert "use_bn" not in cfg["model_args"]
    model, args = build_model(cfg, 12, print)
    assert "use_bn" not in args and model.num_classes == 12
