"""main.py end to end on a tiny synthetic dataset: train, test, resume, DDP, NaN skip, checkpoints."""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import main as main_module
from training.checkpoints import payload
from training.run import build_run
from training.workdir import claim
from utils.checkpoint import load_checkpoint
from utils.errors import ConfigError
from utils.compile import BACKEND_ENV
from utils.config import resolve_config
from tests.malicious_pickle import TouchesMarker
from tests.train_support import (REPO_ROOT, make_tiny_dataset, model_state, tiny_config,
                                 write_config)


# Whole-model compiles take minutes on a small CPU (STFNET_COMPILE_BACKEND=aot_eager: about one).
COMPILE_SLOW = pytest.mark.skipif(os.environ.get("STFNET_COMPILE_TESTS") != "1",
                                  reason="compiles the model: set STFNET_COMPILE_TESTS=1")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


def run_main(cfg: dict, tmp_path: Path, *extra: str) -> dict:
    path = write_config(cfg, tmp_path / f"cfg_{len(list(tmp_path.glob('cfg_*')))}.yaml")
    return main_module.main(["--config", str(path), *extra])


def assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if atol == 0.0:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key].float(), b[key].float(), atol=atol, rtol=1e-4, msg=key)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One 2-epoch run with dev evaluation and the final test (shared by several tests)."""
    tmp = tmp_path_factory.mktemp("trained")
    work = tmp / "work"
    summary = run_main(tiny_config(data, work), tmp)
    return work, summary


def test_train_writes_checkpoints_logs_metrics_and_tests_the_best(trained):
    work, summary = trained
    for name in ("config.yaml", "log.txt", "metrics.csv", "curves.png", "last.pt", "best_model.pt",
                 "epoch000_model.pt", "epoch001_model.pt", "train_results.json",
                 "epoch_1/output-hypothesis-dev.ctm", "epoch_1/output-hypothesis-dev-conv.ctm",
                 "test_best/output-hypothesis-test.ctm"):
        assert (work / name).is_file(), name
    rows = list(csv.DictReader(open(work / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert all(0.0 <= float(r["dev_wer"]) for r in rows) and float(rows[0]["loss"]) > 0
    assert 0.0 <= summary["test_wer"] and summary["global_step"] == 4
    ckpt = torch.load(work / "last.pt", weights_only=True)
    for key in ("model_state_dict", "optimizer_state_dict", "scheduler_state_dict",
                "scaler_state_dict", "epoch", "global_step", "rng_state", "config", "gloss_dict",
                "model_args", "best_dev_wer"):
        assert key in ckpt, key
    assert set(ckpt["rng_state"]) >= {"python", "numpy", "torch", "cuda"}
    assert not list(work.glob(".*.tmp"))
    # best_model.pt: what inference needs, and the counters resume reconciles with; no optimizer.
    best = torch.load(work / "best_model.pt", weights_only=True)
    assert set(best) == {"model_state_dict", "config", "gloss_dict", "model_args", "epoch", "global_step",
                         "train_state", "best_dev_wer", "checksum"}
    assert (work / "best_model.pt").stat().st_size < (work / "last.pt").stat().st_size / 2  # Adam: 2 more copies


def test_test_phase_on_our_and_on_published_format_checkpoints(trained, data, tmp_path):
    work, _ = trained
    cfg = tiny_config(data, tmp_path / "eval_ours", phase="test")
    ours = run_main(cfg, tmp_path, "--load-weights", str(work / "best_model.pt"))
    assert set(ours) >= {"dev_wer", "test_wer", "dev_conv_wer", "test_conv_wer"}
    assert (tmp_path / "eval_ours" / "eval" / "output-hypothesis-test.ctm").is_file()
    # The published checkpoints: only `model_state_dict`, keys prefixed by DataParallel's `module.`.
    published = {"model_state_dict": {f"module.{k}": v for k, v in model_state(work / "best_model.pt").items()}}
    torch.save(published, tmp_path / "published.pt")
    cfg = tiny_config(data, tmp_path / "eval_pub", phase="test")
    theirs = run_main(cfg, tmp_path, "--load-weights", str(tmp_path / "published.pt"))
    assert theirs == ours


def sampler_config(bucketing: bool) -> dict:
    return {"length_bucketing": {"enabled": bucketing, "pool_batches": 2}}


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """bucketing -> last.pt of an uninterrupted 2-epoch x 2-step run (what resumed runs reproduce)."""
    runs: dict[bool, dict] = {}

    def get(bucketing: bool = False) -> dict:
        if bucketing not in runs:
            tmp = tmp_path_factory.mktemp("straight")
            run_main(tiny_config(data, tmp / "straight", eval_splits=[], save_interval=100,
                                 **sampler_config(bucketing)), tmp)
            runs[bucketing] = load_checkpoint(tmp / "straight" / "last.pt")
        return runs[bucketing]
    return get


@pytest.mark.parametrize("bucketing", [False, True])
def test_resume_after_interruption_is_exact(data, tmp_path, bucketing, straight):
    resumed = tiny_config(data, tmp_path / "resumed", eval_splits=[], save_interval=100,
                          **sampler_config(bucketing))
    run_main(resumed, tmp_path, "--max-steps", "1")      # killed in the middle of epoch 0
    run_main(resumed, tmp_path, "--max-steps", "3")      # rerun into the work dir; killed in epoch 1
    ckpt = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert ckpt["train_state"]["epoch"] == 1 and ckpt["global_step"] == 3
    assert ckpt["train_state"]["batch_in_epoch"] == 1
    run_main(resumed, tmp_path)                          # and on to the end
    a = straight(bucketing)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 4
    assert_same_weights(a["model_state_dict"], b["model_state_dict"])
    for sa, sb in zip(a["optimizer_state_dict"]["state"].values(), b["optimizer_state_dict"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert a["scheduler_state_dict"]["last_epoch"] == b["scheduler_state_dict"]["last_epoch"] == 2
    rows = list(csv.DictReader(open(tmp_path / "resumed" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert all(0.0 <= float(r["padded_fraction"]) < 1.0 for r in rows)


def damage(path: Path) -> None:
    """Truncate a file to half its size, as a crash of the disk or a copy would."""
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def test_damaged_last_checkpoint_after_a_rotation_resumes_from_the_previous_one(data, tmp_path, straight):
    work = tmp_path / "damaged"
    cfg = tiny_config(data, work, eval_splits=[], save_interval=100)
    run_main(cfg, tmp_path, "--max-steps", "3")  # end of epoch 0 saved, then step 3 rotated it
    previous = load_checkpoint(work / "last_previous.pt")
    assert previous["global_step"] == 2 and previous["train_state"]["epoch_complete"]
    damage(work / "last.pt")                     # the damage hits right after the rotation
    run_main(cfg, tmp_path)
    log = (work / "log.txt").read_text()
    assert f"{work / 'last.pt'} is damaged" in log and "resuming from the checkpoint before it" in log
    final = load_checkpoint(work / "last.pt")
    assert final["global_step"] == straight()["global_step"] == 4
    assert_same_weights(straight()["model_state_dict"], final["model_state_dict"])
    assert load_checkpoint(work / "last_previous.pt")["global_step"] == 2  # rotated: end of epoch 0


def test_no_usable_checkpoint_is_one_error_line_and_its_hint_works(data, tmp_path, capsys):
    work = tmp_path / "both"
    cfg = write_config(tiny_config(data, work, eval_splits=[], num_epoch=1, save_interval=100),
                       tmp_path / "both.yaml")
    claim(work, "last.pt", "last_previous.pt")  # a run's damaged checkpoints
    (work / "last.pt").write_bytes(b"PK\x03\x04 damaged")
    (work / "last_previous.pt").write_bytes(b"damaged too")
    assert main_module.cli(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot resume the run in")
    assert "last.pt" in err[0] and "last_previous.pt" in err[0] and "--overwrite" in err[0]
    assert main_module.cli(["--config", str(cfg), "--overwrite"]) == 0  # what the hint says
    assert load_checkpoint(work / "last.pt")["global_step"] == 2


def test_nonfinite_loss_batches_are_skipped_and_reported(data, tmp_path):
    cfg = tiny_config(data, tmp_path / "nan", eval_splits=[], num_epoch=1, max_skipped_share=0.5,
                      model="tests.train_support.NaNOnceSLRModel")
    # --overwrite: a stale (unreadable) checkpoint in the work dir is deleted, not resumed from.
    claim(tmp_path / "nan", "last.pt")
    (tmp_path / "nan" / "last.pt").write_bytes(b"stale")
    summary = run_main(cfg, tmp_path, "--overwrite")
    assert summary["skipped_batches"] == 1 and summary["global_step"] == 1
    log = (tmp_path / "nan" / "log.txt").read_text()
    assert "skipped batch 1 of epoch 0" in log and "shorter than its gloss sequence" in log
    assert "01January_2010" in log or "January" in log or "default-" in log   # video ids listed
    weights = model_state(tmp_path / "nan" / "last.pt")
    assert all(torch.isfinite(v.float()).all() for v in weights.values())
    rows = list(csv.DictReader(open(tmp_path / "nan" / "metrics.csv")))
    assert rows[0]["skipped_batches"] == "1"


def test_crash_during_checkpoint_write_keeps_the_previous_one(data, tmp_path, monkeypatch):
    cfg = tiny_config(data, tmp_path / "crash", eval_splits=[], num_epoch=2, save_interval=100)
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the end-of-epoch-1 checkpoint: write half a file, then die
            f.write(b"PK\x03\x04 partial")
            raise OSError("simulated crash while writing")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="simulated crash"):
        run_main(cfg, tmp_path)
    monkeypatch.setattr(torch, "save", real_save)
    ckpt = torch.load(tmp_path / "crash" / "last.pt", weights_only=True)
    assert ckpt["train_state"]["epoch"] == 0 and ckpt["train_state"]["epoch_complete"]
    assert not [p for p in (tmp_path / "crash").iterdir() if p.name.endswith(".tmp")]
    summary = run_main(cfg, tmp_path)                     # the rerun resumes from epoch 1
    assert summary["global_step"] == 4


def test_features_phase_writes_per_video_features(trained, data, tmp_path):
    work, _ = trained
    cfg = tiny_config(data, tmp_path / "feat", phase="features")
    counts = run_main(cfg, tmp_path, "--load-weights", str(work / "best_model.pt"))
    assert counts == {"train": 4, "dev": 2, "test": 2}
    files = sorted((tmp_path / "feat" / "features" / "dev").glob("*_features.npy"))
    item = __import__("numpy").load(files[0], allow_pickle=True).item()
    assert item["features"].ndim == 2 and item["features"].dtype.name == "float32"
    assert all(isinstance(x, int) for x in item["label"]) and item["label"]
    # ... which the `features` feeder mode trains on (no backbone, no hierarchical branch).
    info = {"features_dir": str(tmp_path / "feat" / "features")}
    cfg = tiny_config(data, tmp_path / "ftrain", num_epoch=1, eval_splits=["dev"], dataset_info=info,
                      feeder_args={"datatype": "features"})
    summary = run_main(cfg, tmp_path)
    assert summary["global_step"] == 2 and summary["best_dev_wer"] >= 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(config: Path, timeout: int, **env: str) -> None:
    """main.py --config `config` under torchrun with 2 CPU processes (gloo), one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), **env}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                           "tests/train_main.py", "--config", str(config)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_process_gloo_matches_one_process_with_the_same_global_batch(data, tmp_path):
    """torchrun, 2 CPU processes x batch 2 with SyncBatchNorm == 1 process x batch 4.

    SGD with a small learning rate keeps the run in the regime where float rounding is not
    amplified; the LiftPool regularisers (Cu, Cp) are L2 norms over the whole batch tensor (as
    the original), not per-sample means, so no data-parallel split reproduces them: they are off.
    """
    common = dict(eval_splits=[], num_epoch=2, save_interval=1,
                  optimizer_args={"optimizer": "SGD", "base_lr": 1e-4, "step": [5]},
                  loss_weights={"Cu": 0.0, "Cp": 0.0})
    single = tiny_config(data, tmp_path / "one", batch_size=4, **common)
    run_main(single, tmp_path)
    double = tiny_config(data, tmp_path / "two", batch_size=2, sync_bn=True, **common)
    run_two_processes(write_config(double, tmp_path / "two.yaml"), timeout=240)
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 2
    assert len(b["rng_state_per_rank"]) == 2
    atol = 2e-5
    assert_same_weights(a["model_state_dict"], b["model_state_dict"], atol=atol)
    # The comparison is not trivial: one step moves the weights far more than the tolerance.
    step1 = model_state(tmp_path / "one" / "epoch000_model.pt")
    moved = max((a["model_state_dict"][k].float() - step1[k].float()).abs().max().item() for k in step1)
    assert moved > 50 * atol
    log = (tmp_path / "two" / "log.txt").read_text()
    assert "world size 2" in log and log.count("phase train") == 1   # only rank 0 writes


def test_demo_config_short_run_trains_and_scores(data, tmp_path):
    """The CI form of `make demo`: config/demo.yaml for one epoch on the tiny set, then the scorer."""
    pre = tmp_path / "pre56"
    subprocess.run([sys.executable, "preprocess/dataset_preprocess.py", "--dataset-root", str(data["raw"]),
                    "--output-dir", str(pre), "--output-res", "56x56px", "--process-image"],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    work = tmp_path / "demo"
    summary = main_module.main([
        "--config", str(REPO_ROOT / "config" / "demo.yaml"), "--work-dir", str(work), "--num-epoch", "1",
        "--set", f"dataset_info.dataset_root={data['raw']}",
        "--set", f"dataset_info.dict_path={pre / 'gloss_dict.npy'}",
        "--set", "progress_bar=false", "--set", "tensorboard=false"])
    proc = subprocess.run([sys.executable, "-m", "evaluation.wer", str(pre / "phoenix2014-groundtruth-test.stm"),
                           str(work / "test_best" / "output-hypothesis-test.ctm"), "--json"],
                          cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    assert json.loads(proc.stdout)["wer"] == pytest.approx(summary["test_wer"])


def test_checkpoint_that_runs_code_is_refused_with_one_error_line(data, tmp_path, capsys):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    torch.save({"model_state_dict": {}, "payload": TouchesMarker(marker)}, evil)
    cfg = write_config(tiny_config(data, tmp_path / "evil_run", phase="test"), tmp_path / "evil.yaml")
    assert main_module.cli(["--config", str(cfg), "--load-weights", str(evil)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: refused to load") and "--unsafe-load" in err[0]
    assert not marker.exists()


def test_test_phase_with_lm_saves_logits_that_tuning_decodes(trained, data, tmp_path):
    import warnings

    from decoding.arpa import write_arpa
    from decoding.build_lm import estimate_kneser_ney, read_sentences
    from decoding.tuning import main as tune_main

    work, _ = trained
    lm = tmp_path / "gloss.arpa"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny corpus: fallback discounts
        write_arpa(estimate_kneser_ney(read_sentences(data["pre"] / "train_info.npy"), 2), lm)
    cfg = tiny_config(data, tmp_path / "eval_lm", phase="test", decode={"mode": "beam"})
    summary = run_main(cfg, tmp_path, "--load-weights", str(work / "best_model.pt"),
                       "--lm-path", str(lm), "--lm-weight", "0.7", "--word-bonus", "0.5")
    assert set(summary) >= {"dev_wer", "test_wer"}
    saved = tmp_path / "eval_lm" / "eval" / "dev-logits.pt"
    assert saved.is_file() and (tmp_path / "eval_lm" / "eval" / "test-logits.pt").is_file()
    stm = data["pre"] / "phoenix2014-groundtruth-dev.stm"
    assert tune_main(["--logits", str(saved), "--lm-path", str(lm), "--stm", str(stm), "--out",
                      str(tmp_path / "tune"), "--alphas", "0,0.7", "--betas", "0,0.5"]) == 0
    table = json.loads((tmp_path / "tune" / "best.json").read_text())["table"]
    # The tuner decodes the saved logits as evaluation did: same pair, same dev WER.
    assert [r["wer"] for r in table if (r["lm_weight"], r["word_bonus"]) == (0.7, 0.5)] == \
        [summary["dev_wer"]]
    with pytest.raises(ConfigError, match="needs decode.mode: beam .*: add --decode-mode beam"):
        run_main(tiny_config(data, tmp_path / "bad", phase="test"), tmp_path, "--load-weights",
                 str(work / "best_model.pt"), "--lm-path", str(lm))


STARTUP_MISTAKES = {
    "misspelt dataset": (["--dataset", "phoenix2014T"], {}, ["unknown dataset 'phoenix2014T'",
                                                           "did you mean 'phoenix2014-T'"]),
    "model_args type": (["--set", "model_args.hidden_size=16x"], {},
                        ["model_args.hidden_size", "expects an int", "16x"]),
    "feeder_args type": (["--set", "feeder_args.input_size=big"], {}, ["feeder_args.input_size", "big"]),
    "model_args size": (["--set", "model_args.hidden_size=100000000"], {},
                        ["GiB of parameters, more than --max-param-gib 8", "model_args.hidden_size"]),
    "missing ground truth": (["--set", "dataset_info.evaluation_prefix=CSL-Daily-groundtruth"], {},
                             ["CSL-Daily-groundtruth-dev.stm", "evaluation_prefix"]),
    "ground truth of another split": (["--set", "dataset_info.evaluation_prefix=phoenix2014-groundtruth",
                                       "--set", "eval_splits=[test]", "--set", "test_best=true"],
                                      {"stm_swap": True}, ["has no reference for", "test split"]),
    "wrong dataset root": ([], {"root": "nowhere"}, ["first video of the train split", "dataset_root"]),
    "missing gloss dict": (["--set", "dataset_info.dict_path=nowhere/gloss_dict.npy"], {},
                           ["gloss_dict.npy", "dict_path"]),
    "gloss dict that would run code": ([], {"unsafe_dict": True}, ["dict_path", "posix.system", "preprocess/"]),
    "unknown glosses": (["--set", "feeder_args.unknown_glosses=error"], {"drop_gloss": True},
                        ["not in the gloss dict", "unknown_glosses=warn"]),
    "bad device": (["--device", "gpu0"], {}, ["--device", "key 'device'"]),
    "fewer than one batch": (["--batch-size", "100"], {}, ["fewer than one batch of 100", "batch_size"]),
    "frames of another resolution": ([], {"original_frames": True},
                                     ["210x260 pixels, not the 64x64", "frames_res"]),
}


@pytest.mark.parametrize("case", sorted(STARTUP_MISTAKES))
def test_startup_checks_fail_before_any_step_and_overwrite_deletes_nothing(data, tmp_path, capsys, case):
    import numpy as np

    args, setup, expected = STARTUP_MISTAKES[case]
    work = tmp_path / "run"
    claim(work, "best_model.pt")
    (work / "best_model.pt").write_bytes(b"the previous run")          # what --overwrite must keep
    info = {}
    if setup.get("root"):
        info["dataset_root"] = str(tmp_path / setup["root"])
    if setup.get("original_frames"):  # the download's frames where the 64x64 ones are expected
        info["frames_dir"] = str(data["raw"] / "features" / "fullFrame-210x260px")
    if setup.get("stm_swap"):  # the dev STM under the test split's name
        swapped = tmp_path / "gt"
        swapped.mkdir()
        (swapped / "phoenix2014-groundtruth-test.stm").write_text(
            (data["pre"] / "phoenix2014-groundtruth-dev.stm").read_text())
        info["evaluation_dir"] = str(swapped)
    if setup.get("drop_gloss"):
        vocab = np.load(data["pre"] / "gloss_dict.npy", allow_pickle=True).item()
        first = sorted(vocab)[0]
        vocab = {g: [i + 1, v[1]] for i, (g, v) in enumerate(sorted(
            (g, v) for g, v in vocab.items() if g != first))}
        (tmp_path / "dict").mkdir()
        np.save(tmp_path / "dict" / "gloss_dict.npy", vocab)
        info["dict_path"] = str(tmp_path / "dict" / "gloss_dict.npy")
        info["info_dir"] = str(data["pre"])
    if setup.get("unsafe_dict"):  # a shared gloss_dict.npy whose pickle calls os.system
        (tmp_path / "dict").mkdir()
        np.save(tmp_path / "dict" / "gloss_dict.npy", {"A": [1, 1], "x": TouchesMarker(tmp_path / "ran")})
        info["dict_path"] = str(tmp_path / "dict" / "gloss_dict.npy")
        info["info_dir"] = str(data["pre"])
    cfg = write_config(tiny_config(data, work, dataset_info=info), tmp_path / "cfg.yaml")
    assert main_module.cli(["--config", str(cfg), "--overwrite", *args]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), captured.err
    for text in expected:
        assert text in err[0], (text, err[0])
    assert sorted(p.name for p in work.iterdir()) == [".stfnet-run.json", "best_model.pt"]  # nothing deleted or written
    assert (work / "best_model.pt").read_bytes() == b"the previous run"
    assert not (tmp_path / "ran").exists()


def train_video_ids(data) -> list[str]:
    import numpy as np

    info = np.load(data["pre"] / "train_info.npy", allow_pickle=True).item()
    return [entry["fileid"] for key, entry in info.items() if isinstance(key, int)]


@pytest.mark.parametrize("model, share, expected", [
    ("NaNAlwaysSLRModel", 0.25, "it took no optimizer step"),
    ("NaNOnceSLRModel", 0.25, "50% of its batches were skipped, more than max_skipped_share=0.25"),
])
def test_run_that_does_not_train_fails_naming_the_videos_without_best_model(
        data, tmp_path, capsys, model, share, expected):
    work = tmp_path / "failing"
    cfg = write_config(tiny_config(data, work, num_epoch=1, eval_splits=["dev"], max_skipped_share=share,
                                   model=f"tests.train_support.{model}"), tmp_path / "failing.yaml")
    assert main_module.cli(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: training failed in epoch 0") and expected in err[0]
    named = [video for video in train_video_ids(data) if video in err[0]]
    assert len(named) == (4 if model == "NaNAlwaysSLRModel" else 2)   # the skipped batches' videos
    assert not (work / "best_model.pt").exists() and not (work / "epoch_0").exists()
    assert "training failed in epoch 0" in (work / "log.txt").read_text()


def test_two_process_logged_dev_wer_is_the_saved_checkpoints_wer(data, tmp_path):
    """2 gloo processes without SyncBatchNorm: their BatchNorm statistics differ after training,
    yet both evaluate with rank 0's, which last.pt holds; one process scores it identically."""
    dump = tmp_path / "dump"
    dump.mkdir()
    work = tmp_path / "ddp"
    cfg = tiny_config(data, work, num_epoch=1, eval_splits=["dev"],
                      model="tests.train_support.StatsDumpSLRModel")
    run_two_processes(write_config(cfg, tmp_path / "ddp.yaml"), timeout=300,
                      STFNET_TEST_DUMP=str(dump))
    trained = [torch.load(dump / f"train_rank{r}.pt") for r in (0, 1)]
    assert any(not torch.equal(trained[0][k], trained[1][k]) for k in trained[0])  # they did differ
    evaluated = [torch.load(dump / f"eval_rank{r}.pt") for r in (0, 1)]
    saved = load_checkpoint(work / "last.pt")["model_state_dict"]
    for key in evaluated[0]:
        assert torch.equal(evaluated[0][key], evaluated[1][key]) and torch.equal(evaluated[0][key], saved[key])
    logged = float(next(csv.DictReader(open(work / "metrics.csv")))["dev_wer"])
    single = run_main(tiny_config(data, tmp_path / "one", phase="test", eval_splits=["dev"]), tmp_path,
                      "--load-weights", str(work / "last.pt"))
    assert single["dev_wer"] == pytest.approx(logged, abs=1e-4)
    assert ((tmp_path / "one" / "eval" / "output-hypothesis-dev.ctm").read_text()
            == (work / "epoch_0" / "output-hypothesis-dev.ctm").read_text())


def test_unknown_gloss_warning_also_goes_to_log_txt(data, tmp_path):
    import numpy as np

    vocab = np.load(data["pre"] / "gloss_dict.npy", allow_pickle=True).item()
    dropped = np.load(data["pre"] / "train_info.npy", allow_pickle=True).item()[0]["label"].split()[0]
    kept = sorted(g for g in vocab if g != dropped)
    (tmp_path / "dict").mkdir()
    np.save(tmp_path / "dict" / "gloss_dict.npy", {g: [i + 1, vocab[g][1]] for i, g in enumerate(kept)})
    info = {"dict_path": str(tmp_path / "dict" / "gloss_dict.npy"), "info_dir": str(data["pre"])}
    work = tmp_path / "warned"
    with pytest.warns(UserWarning, match="not in the gloss dict"):
        run_main(tiny_config(data, work, num_epoch=1, eval_splits=[], dataset_info=info,
                             max_skipped_share=1.0), tmp_path)
    log = (work / "log.txt").read_text()
    assert "warning: " in log and "not in the gloss dict" in log and dropped in log


def test_weights_of_another_vocabulary_of_the_same_size_are_refused(trained, data, tmp_path, capsys):
    """Same size, other order: every class would silently get another gloss's name."""
    import shutil

    import numpy as np

    from utils.npy import load_npy_object

    work, _ = trained
    vocab = load_npy_object(data["pre"] / "gloss_dict.npy")
    first, second = sorted(vocab)[:2]
    swapped = {**vocab, first: [vocab[second][0], vocab[first][1]], second: [vocab[first][0], vocab[second][1]]}
    (tmp_path / "dict").mkdir()
    np.save(tmp_path / "dict" / "gloss_dict.npy", swapped)
    info = {"dict_path": str(tmp_path / "dict" / "gloss_dict.npy"), "info_dir": str(data["pre"])}
    cfg = write_config(tiny_config(data, tmp_path / "eval", phase="test", dataset_info=info), tmp_path / "c.yaml")
    weights = str(work / "best_model.pt")

    assert main_module.cli(["--config", str(cfg), "--load-weights", weights]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: dataset_info.dict_path is not the vocabulary"), err
    assert f"{first}: {vocab[second][0]} vs {vocab[first][0]}" in err[0] and "--other-vocabulary" in err[0]
    assert main_module.cli(["--config", str(cfg), "--load-weights", weights, "--other-vocabulary"]) == 0

    # Resuming a run under another dictionary is refused the same way.
    run = tmp_path / "run"
    shutil.copytree(work, run)
    resumed = write_config(tiny_config(data, run, num_epoch=3, dataset_info=info), tmp_path / "r.yaml")
    before = (run / "last.pt").read_bytes()
    assert main_module.cli(["--config", str(resumed)]) == 2
    assert "--other-vocabulary" in capsys.readouterr().err and (run / "last.pt").read_bytes() == before


def test_compile_option_compiles_the_training_forward_and_keeps_checkpoint_keys(data, tmp_path):
    # torch.compile is lazy: building the run compiles nothing (training it does: the slow
    # test below, and tests/test_compile.py for the compiled forward itself).
    path = write_config(tiny_config(data, tmp_path / "compiled", eval_splits=[], compile="default"),
                        tmp_path / "compiled.yaml")
    compiled = build_run(resolve_config(["--config", str(path)])[0])
    compiled.lock.release()  # the same work dir for the second build
    eager = build_run(resolve_config(["--config", str(path), "--compile", "none"])[0])
    assert compiled.model._orig_mod is compiled.core and compiled.opts.compiled
    assert eager.model is eager.core and not eager.opts.compiled
    assert list(payload(compiled)["model_state_dict"]) == list(eager.core.state_dict())


def test_compile_without_a_cxx_compiler_is_one_error_line(data, tmp_path, capsys, monkeypatch):
    from torch._inductor import config

    monkeypatch.delenv(BACKEND_ENV, raising=False)
    path = write_config(tiny_config(data, tmp_path / "nocxx"), tmp_path / "nocxx.yaml")
    with config.patch({"cpp.cxx": (None, "no-such-g++")}):
        assert main_module.cli(["--config", str(path), "--compile"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: compile: default needs a C++ compiler"), err[0]
    assert "apt-get install g++" in err[0] and "compile: none" in err[0]
    assert not (tmp_path / "nocxx").exists()  # a start-up check: nothing written


@COMPILE_SLOW
def test_compiled_training_resumes_with_plain_keys_and_matches_eager(data, tmp_path, straight):
    torch._dynamo.reset()
    run = tiny_config(data, tmp_path / "compiled", eval_splits=[], save_interval=100,
                      compile="default")
    run_main(run, tmp_path, "--max-steps", "1")          # interrupted in epoch 0
    run_main(run, tmp_path)                              # resumed (compiles again) to the end
    a, b = straight(False), torch.load(tmp_path / "compiled" / "last.pt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 4
    assert list(a["model_state_dict"]) == list(b["model_state_dict"])
    # Inductor reorders float32 sums: four Adam steps stay within this of the eager run.
    assert_same_weights(a["model_state_dict"], b["model_state_dict"], atol=1e-4)
    assert "resumed from" in (tmp_path / "compiled" / "log.txt").read_text()


@COMPILE_SLOW
@pytest.mark.parametrize("sync_bn", [False, True])
def test_two_process_gloo_compiled_matches_eager(data, tmp_path, sync_bn):
    """DDP wraps the compiled module (its hooks see the plain parameters); with --sync-bn the
    compiled forward runs the synchronised BatchNorm (its collectives break the graph)."""
    common = dict(eval_splits=[], num_epoch=1, save_interval=1, loss_weights={"Cu": 0.0, "Cp": 0.0},
                  sync_bn=sync_bn)
    for name, mode in (("eager", "none"), ("compiled", "default")):
        run_two_processes(write_config(tiny_config(data, tmp_path / name, compile=mode, **common),
                                       tmp_path / f"{name}.yaml"), timeout=1800)
    a = torch.load(tmp_path / "eager" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "compiled" / "last.pt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 1
    assert list(a["model_state_dict"]) == list(b["model_state_dict"])
    assert_same_weights(a["model_state_dict"], b["model_state_dict"], atol=1e-4)
