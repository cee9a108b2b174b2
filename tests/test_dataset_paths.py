"""Default dataset paths agree across preprocess scripts, config/*.yaml, the README and the original README."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from dataset.layout import raw_frames_root
from dataset.registry import NAMES, dataset_spec
from dataset.synthetic import generate
from preprocess import cli
from training.data import dataset_paths
from utils.config import resolve_config


@pytest.mark.parametrize("dataset", NAMES)
def test_configs_read_what_preprocessing_writes_by_default(dataset, repo_root):
    cfg, _ = resolve_config(["--config", str(repo_root / "config" / f"{dataset}.yaml")])
    restated = yaml.safe_load((repo_root / "config" / f"{dataset}.yaml").read_text()).get("dataset_info", {})
    assert not {"dataset_root", "dict_path", "evaluation_prefix"} & set(restated)  # the entry says them
    info = dataset_paths(cfg, dataset_spec(dataset), Path("work"))

    def in_repository(path: Path) -> Path:
        return path.relative_to(repo_root) if path.is_absolute() else Path(os.path.normpath(path))

    assert in_repository(info["dataset_root"]) == Path(dataset_spec(dataset).default_root)
    assert in_repository(info["dict_path"].parent) == Path(f"preprocess/{dataset}")
    assert info["evaluation_prefix"] == f"{dataset}-groundtruth"
    assert dataset_spec(dataset).default_root in (repo_root / "README.md").read_text()


def test_default_roots_are_the_original_readme_links(shared_dir):
    """`ln -s ... ./dataset/X` of the original README: the root is the link or, for PHOENIX-2014, inside it."""
    seed = (shared_dir / "seed" / "STFNet-README.md").read_text()
    links = re.findall(r"ln -s \S+ \./(dataset/\S+?)`", seed)
    assert links == ["dataset/phoenix2014", "dataset/phoenix2014-T", "dataset/CSL-Daily"]
    assert [dataset_spec(d).default_root for d in NAMES if d not in ("CSL", "table")] == \
        [links[0] + "/phoenix-2014-multisigner", links[1], links[2]]  # the 2014 release holds the multisigner set
    assert dataset_spec("CSL").default_root == "dataset/CSL"  # the original's configs/CSL.yaml (no README link)


def test_defaults_are_relative_to_the_repository_from_any_directory(tmp_path, monkeypatch):
    """The original README runs the scripts from preprocess/ with no options."""
    root = tmp_path / dataset_spec("phoenix2014-T").default_root
    generate("phoenix2014-T", root, size="tiny", seed=1)
    (tmp_path / "preprocess").mkdir()
    monkeypatch.setattr(cli, "REPO_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path / "preprocess")
    assert cli.main("phoenix2014-T", []) == 0
    info = np.load(tmp_path / "preprocess" / "phoenix2014-T" / "dev_info.npy", allow_pickle=True).item()
    assert Path(info["prefix"]) == raw_frames_root(dataset_spec("phoenix2014-T"), root)


@pytest.mark.parametrize("dataset, off_by_one", [("phoenix2014-T", "above"), ("phoenix2014", "inside"),
                                                 ("CSL-Daily", "above"), ("CSL", "above"), ("CSL", "inside")])
def test_root_one_level_off_names_the_root_to_pass(dataset, off_by_one, tmp_path, capsys):
    root = tmp_path / "release" / "data"
    generate(dataset, root, size="tiny", seed=1)
    if off_by_one == "above":
        given = tmp_path / "release"
    else:  # the inner folder of the root: the features/ tree
        given = root / "features"
    assert cli.main(dataset, ["--dataset-root", str(given), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    if off_by_one == "above":
        assert f"{root} holds it: pass --dataset-root {root}" in err
    else:
        assert f"pass --dataset-root {root}" in err
    fixed = re.search(r"pass --dataset-root (\S+)", err).group(1)
    assert cli.main(dataset, ["--dataset-root", fixed, "--output-dir", str(tmp_path / "out")]) == 0
    shutil.rmtree(tmp_path / "out")


def test_one_preprocessing_entry_and_the_original_scripts_as_its_aliases(tmp_path, repo_root):
    import subprocess
    import sys

    root = tmp_path / "raw"
    generate("CSL", root, size="tiny", seed=2)
    run = dict(cwd=repo_root, capture_output=True, text=True)
    common = ["--dataset-root", str(root), "--output-res", "32x32px"]
    entry = subprocess.run([sys.executable, "-m", "preprocess", "--dataset", "CSL", *common,
                            "--output-dir", str(tmp_path / "entry")], **run)
    alias = subprocess.run([sys.executable, "preprocess/dataset_preprocess-CSL.py", *common,
                            "--output-dir", str(tmp_path / "alias")], **run)
    assert entry.returncode == alias.returncode == 0, entry.stderr + alias.stderr
    for name in ("gloss_dict.npy", "train_info.npy", "CSL-groundtruth-dev.stm"):
        assert (tmp_path / "entry" / name).read_bytes() == (tmp_path / "alias" / name).read_bytes(), name
    wrong = subprocess.run([sys.executable, "-m", "preprocess", "--dataset", "CSL-daily", *common], **run)
    assert wrong.returncode == 2 and "'CSL-daily'" in wrong.stderr and "Traceback" not in wrong.stderr
