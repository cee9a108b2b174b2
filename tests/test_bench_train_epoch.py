"""bench/train_epoch.py takes its recommended path from the recipe, compile mode included."""
from __future__ import annotations

import yaml

from bench.train_epoch import recipe_path
from tests.train_support import REPO_ROOT


def test_recommended_path_reads_the_recipes_compile_amp_feeder_and_sampler(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"feeder_args": {"packed": True}, "amp": "bf16",
                                      "length_bucketing": {"enabled": True}, "compile": "default"}))
    path = recipe_path(recipe)
    assert (path.packed, path.bucketing, path.amp, path.compile, path.conv3d) == (
        True, True, "bf16", "default", False)
    assert recipe_path(REPO_ROOT / "config" / "fast_train.yaml").compile == "default"
    recipe.write_text("{}\n")
    assert recipe_path(recipe).compile == "none" and not recipe_path(recipe).packed
