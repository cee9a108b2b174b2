"""The `decode:` section: one typed object, one spelling of its options, old keys moved."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

from decoding.config import DecodeConfig, add_decode_arguments, decode_overrides
from inference.loading import model_config
from main import parser as main_parser
from utils.config import ConfigError, default_config, resolve_config, upgrade_saved_config

RECIPE = {"mode": "beam", "beam_width": 10, "lm_path": None, "lm_weight": 0.5, "word_bonus": 0.0,
          "token_min_logp": None, "beam_prune_logp": None, "chunk_size": 1024, "save_logits": True}


def test_the_recipe_section_parses_into_the_typed_object():
    assert default_config()["decode"] == RECIPE
    assert dataclasses.asdict(DecodeConfig.recipe()) == RECIPE
    assert DecodeConfig.recipe() == DecodeConfig(**RECIPE)
    parsed = DecodeConfig.from_mapping({**RECIPE, "lm_weight": 1, "token_min_logp": -5})
    assert parsed.lm_weight == 1.0 and isinstance(parsed.lm_weight, float)
    assert parsed.token_min_logp == -5.0 and isinstance(parsed.token_min_logp, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.mode = "max"


@pytest.mark.parametrize("change, key", [
    ({"mode": "greedy"}, "decode.mode"),
    ({"beam_width": 0}, "decode.beam_width"),
    ({"beam_width": 2.5}, "decode.beam_width"),
    ({"beam_width": True}, "decode.beam_width"),
    ({"chunk_size": 0}, "decode.chunk_size"),
    ({"lm_path": 3}, "decode.lm_path"),
    ({"mode": "max", "lm_path": "lm.arpa"}, "decode.lm_path"),
    ({"lm_weight": "high"}, "decode.lm_weight"),
    ({"word_bonus": float("nan")}, "decode.word_bonus"),
    ({"token_min_logp": 2}, "decode.token_min_logp"),
    ({"token_min_logp": True}, "decode.token_min_logp"),
    ({"beam_prune_logp": "near"}, "decode.beam_prune_logp"),
    ({"save_logits": "yes"}, "decode.save_logits"),
])
def test_bad_values_name_their_key(change, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        DecodeConfig.from_mapping({**RECIPE, **change})
    with pytest.raises(ConfigError, match=f"'{key}'"):
        DecodeConfig.recipe().updated(change)


def test_unknown_and_missing_keys_are_named():
    with pytest.raises(ConfigError, match=r"unknown key 'decode.beam_widht'.*'beam_width'"):
        DecodeConfig.from_mapping({**RECIPE, "beam_widht": 4})
    section = dict(RECIPE)
    del section["chunk_size"]
    with pytest.raises(ConfigError, match="decode.chunk_size"):
        DecodeConfig.from_mapping(section)
    with pytest.raises(ConfigError, match=r"unknown key 'decode.top_k'"):
        resolve_config(["--set", "decode.top_k=5"])
    with pytest.raises(ConfigError, match="'decode.beam_width' expects an int"):
        resolve_config(["--set", "decode.beam_width=[1]"])


def test_every_option_has_one_spelling_with_its_underscore_alias(tmp_path):
    dashed = ["--decode-mode", "beam", "--beam-width", "4", "--lm-path", "g.arpa", "--lm-weight", "0.7",
              "--word-bonus", "1", "--token-min-logp", "-5", "--beam-prune-logp", "-10"]
    expected = {"mode": "beam", "beam_width": 4, "lm_path": "g.arpa", "lm_weight": 0.7,
                "word_bonus": 1.0, "token_min_logp": -5.0, "beam_prune_logp": -10.0}
    cfg, _ = resolve_config(dashed, main_parser())
    assert cfg["decode"] == {**RECIPE, **expected}
    underscored = ["--" + a[2:].replace("-", "_") if a.startswith("--") else a for a in dashed]
    assert resolve_config(underscored, main_parser())[0]["decode"] == cfg["decode"]
    parser = argparse.ArgumentParser()
    add_decode_arguments(parser)  # what test_one_video.py, app.py, export.py, generate_cam.py take
    assert decode_overrides(parser.parse_args(dashed)) == expected
    assert decode_overrides(parser.parse_args([])) == {}
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump({"decode": {"mode": "max", "chunk_size": 8}}))
    cfg, _ = resolve_config(["--config", str(cfg_file), "--beam-width", "3"], main_parser())
    assert cfg["decode"] == {**RECIPE, "mode": "max", "chunk_size": 8, "beam_width": 3}


@pytest.mark.parametrize("old, name, new", [
    ({"decode_mode": "max"}, "decode_mode", "decode.mode"),
    ({"beam_width": 5}, "beam_width", "decode.beam_width"),
    ({"decode_args": {"lm_weight": 1.0}}, "decode_args", "decode"),
    ({"model_args": {"search_mode": "max"}}, "model_args.search_mode", "decode.mode"),
    ({"model_args": {"beam_width": 5}}, "model_args.beam_width", "decode.beam_width"),
])
def test_a_users_old_key_gets_an_error_naming_the_new_one(tmp_path: Path, old, name, new):
    cfg_file = tmp_path / "old.yaml"
    cfg_file.write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match=rf"old\.yaml: key '{name}' moved to '{new}'"):
        resolve_config(["--config", str(cfg_file)])
    with pytest.raises(ConfigError, match=f"moved to '{new}'"):
        resolve_config(["--set", f"{name}=1"])


def test_a_checkpoints_old_keys_move_to_the_decode_section():
    saved = {"decode_mode": "max", "beam_width": 7, "random_fix": True, "work_dir": "w",
             "decode_args": {"lm_path": None, "lm_weight": 0.9, "word_bonus": 2.0, "chunk_size": 64},
             "model_args": {"c2d_type": "resnet18", "search_mode": "beam", "beam_width": 4},
             "optimizer_args": {"base_lr": 0.1, "learning_ratio": 1}}
    upgraded = upgrade_saved_config(saved)
    # The model's own keys were what evaluation ran with (model_args overrode decode_mode).
    assert upgraded == {"work_dir": "w", "model_args": {"c2d_type": "resnet18"},
                        "optimizer_args": {"base_lr": 0.1},
                        "decode": {"lm_path": None, "lm_weight": 0.9, "word_bonus": 2.0,
                                   "chunk_size": 64, "mode": "beam", "beam_width": 4}}
    assert saved["decode_mode"] == "max"  # the checkpoint's dict is left as it was
    assert upgrade_saved_config({"decode_mode": "max"}) == {"decode": {"mode": "max"}}
    assert upgrade_saved_config(upgraded) == upgraded  # today's configs pass unchanged
    cfg = model_config(saved)  # what the tools rebuild a checkpoint from
    assert DecodeConfig.from_mapping(cfg["decode"]) == DecodeConfig(
        **{**RECIPE, "lm_weight": 0.9, "word_bonus": 2.0, "chunk_size": 64, "beam_width": 4})
    assert "decode_mode" not in cfg and "random_fix" not in cfg


def test_an_exported_files_decoding_is_read_in_either_format():
    cfg = DecodeConfig.recipe().updated({"mode": "max", "beam_width": 3})
    assert DecodeConfig.from_onnx_metadata({"decode": cfg.onnx_metadata()}) == cfg
    # stfnet-onnx-1 files spelt the mode `search_mode`, at the top level
    assert DecodeConfig.from_onnx_metadata({"search_mode": "max", "beam_width": 3}) == cfg
