"""Defaults that fit the machine: loader processes capped at the CPUs the run may use (said once
in log.txt), TensorBoard's absence said once, where the frames come from, and best_model.pt
refused as a resume checkpoint."""
from __future__ import annotations

import importlib.util
import os

import pytest

import main as main_module
from tests.train_support import make_tiny_dataset, tiny_config, write_config
from training import data as training_data
from training.run import build_run
from utils.config import resolve_config
from utils.device import available_cpus

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


def test_available_cpus_is_the_affinity_mask():
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)


def test_workers_capped_at_the_cpus_and_tensorboard_absence_logged_once(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(training_data, "available_cpus", lambda: 2)
    cfg = tiny_config(tiny_data, tmp_path / "work", num_worker=10, tensorboard=True)
    run = build_run(resolve_config(["--config", str(write_config(cfg, tmp_path / "run.yaml"))])[0])
    assert run.data.workers == 2
    loader = run.data.loader(run.data.dataset("dev", train=False), train=False)
    assert loader.num_workers == 2
    log = (tmp_path / "work" / "log.txt").read_text()
    assert log.count("num_worker 10 capped at 2") == 1
    if importlib.util.find_spec("tensorboard") is None:
        assert log.count("tensorboard: no events are written (the tensorboard package is not installed") == 1
    run.metrics.close()


def test_workers_within_the_cpus_are_kept_silently(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path / "work", num_worker=1, tensorboard=False)
    run = build_run(resolve_config(["--config", str(write_config(cfg, tmp_path / "run.yaml"))])[0])
    assert run.data.workers == 1
    log = (tmp_path / "work" / "log.txt").read_text()
    assert "capped" not in log and "tensorboard" not in log
    assert log.count("train frames: frame files under ") == 1 and "(no pack: feeder_args.packed is false)" in log


def test_best_model_is_no_resume_checkpoint(tiny_data, tmp_path, capsys):
    cfg = write_config(tiny_config(tiny_data, tmp_path / "work", num_epoch=1), tmp_path / "run.yaml")
    assert main_module.cli(["--config", str(cfg)]) == 0
    best = tmp_path / "work" / "best_model.pt"
    capsys.readouterr()
    assert main_module.cli(["--config", str(cfg), "--work-dir", str(tmp_path / "again"),
                            "--load-checkpoints", str(best)]) == 2
    err = capsys.readouterr().err
    assert "holds what inference needs" in err and f"--load-weights {best}" in err
