"""A run owns exactly what its record says it created: a work dir holding entries no run
recorded is refused for a new run, --overwrite moves only recorded entries, only after every
start-up check, keeps the old run in <work_dir>.previous until the new one has written its first
checkpoint, and refuses data folders; an evaluation writes into its own folder; one run at a time."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import main as main_module
from tests.train_support import REPO_ROOT, make_tiny_dataset, tiny_config, write_config
from training.workdir import (LOCK, MANIFEST, WorkDirLock, _start_time, claim, previous_dir,
                              read_manifest, read_record)
from utils.errors import ConfigError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="module")
def old_run(data, tmp_path_factory):
    """A finished 1-epoch run (with best_model.pt, last.pt, metrics) to copy for each test."""
    work = tmp_path_factory.mktemp("old") / "run"
    cfg = write_config(tiny_config(data, work, num_epoch=1, eval_splits=["dev"]), work.parent / "run.yaml")
    assert main_module.cli(["--config", str(cfg)]) == 0
    return work


def copy_run(old_run: Path, tmp_path: Path) -> Path:
    work = tmp_path / "run"
    shutil.copytree(old_run, work, symlinks=True)
    return work


def checksums(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `folder` (links listed by their target)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(folder))] = "-> " + os.readlink(path)
        elif path.is_file():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def users_folder(root: Path) -> Path:
    """A folder of the user's: features/mydata, eval/thesis.tex and their own config.yaml."""
    (root / "features" / "mydata").mkdir(parents=True)
    (root / "features" / "mydata" / "a.npy").write_bytes(b"\x93NUMPY mine")
    (root / "eval").mkdir()
    (root / "eval" / "thesis.tex").write_text("\\section{Results}")
    (root / "config.yaml").write_text("my: settings\n")
    return root


# ----------------------------------------------------------------------------- ownership (item 1)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_users_folder_is_refused_and_left_byte_for_byte(data, tmp_path, capsys, overwrite):
    folder = users_folder(tmp_path / "mine")
    before = checksums(folder)
    cfg = write_config(tiny_config(data, folder, num_epoch=1, eval_splits=[]), tmp_path / "c.yaml")
    assert main_module.cli(["--config", str(cfg)] + (["--overwrite"] if overwrite else [])) == 2
    line = one_error_line(capsys)
    assert "no run recorded its entries (config.yaml, eval, features)" in line
    assert checksums(folder) == before and not previous_dir(folder).exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_another_datasets_root_as_work_dir_is_refused_and_keeps_every_frame(data, tmp_path, capsys, overwrite):
    other = tmp_path / "phoenix-T"  # a download of another dataset, given as --work-dir by mistake
    shutil.copytree(data["raw"], other)
    before = checksums(other)
    assert any(name.startswith("features/") for name in before)
    cfg = write_config(tiny_config(data, other, num_epoch=1, eval_splits=[]), tmp_path / "c.yaml")
    assert main_module.cli(["--config", str(cfg)] + (["--overwrite"] if overwrite else [])) == 2
    assert "no run recorded its entries" in one_error_line(capsys)
    assert checksums(other) == before


def test_the_dataset_root_itself_as_work_dir_is_refused(data, tmp_path, capsys):
    raw = tmp_path / "raw"
    shutil.copytree(data["raw"], raw)
    before = checksums(raw)
    cfg = write_config(tiny_config(data, raw, num_epoch=1, eval_splits=[],
                                   dataset_info={"dataset_root": str(raw)}), tmp_path / "c.yaml")
    assert main_module.cli(["--config", str(cfg)]) == 2
    assert "no run recorded its entries" in one_error_line(capsys)
    assert checksums(raw) == before


@pytest.mark.parametrize("where", ["holds raw", "holds pre", "holds config", "inside raw", "inside pre",
                                   "repository"])
def test_overwrite_refuses_data_and_repository_folders(data, tmp_path, capsys, where):
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    shutil.copytree(data["raw"], raw)
    shutil.copytree(data["pre"], pre)
    holder = {"holds raw": tmp_path / "holder", "holds pre": tmp_path / "holder",
              "holds config": tmp_path / "holder", "inside raw": raw / "runs" / "x",
              "inside pre": pre / "x", "repository": REPO_ROOT / "config"}[where]
    if where.startswith("holds"):
        holder.mkdir()
        shutil.move(raw if where == "holds raw" else pre, holder / "data")
        raw, pre = (holder / "data", pre) if where == "holds raw" else (raw, holder / "data")
    if where != "repository":
        claim(holder, "log.txt")  # a run's folder, as far as its record goes
        (holder / "log.txt").write_text("a run's log\n")
    config_dir = holder if where == "holds config" else tmp_path
    cfg = write_config(tiny_config({"raw": raw, "pre": pre}, holder, num_epoch=1, eval_splits=[]),
                       config_dir / "run.yaml")
    watched = holder if where != "repository" else tmp_path
    before = checksums(watched)
    assert main_module.cli(["--config", str(cfg), "--overwrite"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: --overwrite refuses the work dir") or \
        (where == "repository" and "no run recorded its entries" in line), line
    assert checksums(watched) == before and not previous_dir(holder).exists()


def test_overwrite_moves_only_recorded_entries_aside_until_the_first_checkpoint(data, old_run, tmp_path,
                                                                                monkeypatch):
    work = copy_run(old_run, tmp_path)
    recorded = read_manifest(work)
    assert {"last.pt", "best_model.pt", "log.txt", "config.yaml", "train_results.json", "metrics.csv",
            "epoch_0"} <= set(recorded)
    old = checksums(work)
    (work / "notes.txt").write_text("mine")  # not the run's: never moved, never deleted
    (work / "mine").mkdir()
    (work / "mine" / "data.bin").write_bytes(b"\x00\x01")
    ours = {k: v for k, v in checksums(work).items() if k not in old}
    cfg = write_config(tiny_config(data, work, num_epoch=1, eval_splits=[]), tmp_path / "run.yaml")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the new run dies before its first checkpoint
    monkeypatch.setattr(main_module, "train_epoch", killed)
    for _ in range(2):  # a second attempt keeps the only copy of the old run too
        with pytest.raises(KeyboardInterrupt):
            main_module.main(["--config", str(cfg), "--overwrite"])
        aside = previous_dir(work)
        assert {k: v for k, v in checksums(aside).items() if not k.startswith(".stfnet-moved")} == old
        assert not (work / "last.pt").exists() and not (work / LOCK).exists()
        assert {k: v for k, v in checksums(work).items() if k in ours} == ours
    monkeypatch.undo()
    # The rerun writes a checkpoint: only then is the old run deleted.
    assert main_module.cli(["--config", str(cfg)]) == 0
    assert not aside.exists() and (work / "last.pt").is_file()
    assert {k: v for k, v in checksums(work).items() if k in ours} == ours


def test_an_unrecorded_entry_by_a_run_outputs_name_is_refused(data, old_run, tmp_path, capsys):
    work = copy_run(old_run, tmp_path)
    (work / "test_results.json").write_text('{"mine": 1}')  # would be written over by a test phase
    before = checksums(work)
    cfg = write_config(tiny_config(data, work, num_epoch=2, eval_splits=[]), tmp_path / "run.yaml")
    assert main_module.cli(["--config", str(cfg)]) == 2
    assert "test_results.json, which no run recorded" in one_error_line(capsys)
    assert checksums(work) == before


def test_the_record_names_only_run_outputs_and_claim_refuses_a_users_entry(tmp_path):
    claim(tmp_path, "last.pt", "epoch_3", phase="train")
    assert read_record(tmp_path) == {"written": ["epoch_3", "last.pt"], "phase": "train"}
    (tmp_path / MANIFEST).write_text('{"written": ["mine.txt", "../x", "last.pt"]}')
    assert read_manifest(tmp_path) == ["last.pt"]  # an edited record cannot name anything else
    (tmp_path / "best_model.pt").write_bytes(b"the user's")
    with pytest.raises(ConfigError, match="best_model.pt exists but no run recorded it"):
        claim(tmp_path, "best_model.pt")
    assert (tmp_path / "best_model.pt").read_bytes() == b"the user's"


@pytest.mark.parametrize("kind", ["folder", "symlink"])
def test_a_foreign_previous_entry_is_refused(data, old_run, tmp_path, capsys, kind):
    work = copy_run(old_run, tmp_path)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "thesis.tex").write_text("mine")
    if kind == "folder":
        shutil.move(target, previous_dir(work))
    else:
        previous_dir(work).symlink_to(target)
    before, kept = checksums(work), checksums(tmp_path / "run.previous")
    cfg = write_config(tiny_config(data, work, num_epoch=1, eval_splits=[]), tmp_path / "run.yaml")
    assert main_module.cli(["--config", str(cfg), "--overwrite"]) == 2
    assert f"{kind} exists and is not one it made" in one_error_line(capsys)
    assert checksums(work) == before and checksums(tmp_path / "run.previous") == kept


def test_frames_of_a_later_video_are_checked_at_start(data, old_run, tmp_path, capsys):
    raw = tmp_path / "raw"
    shutil.copytree(data["raw"], raw)
    info = np.load(data["pre"] / "dev_info.npy", allow_pickle=True).item()
    last = info[max(k for k in info if isinstance(k, int))]
    frames = sorted((raw / "features" / "fullFrame-64x64px" / "dev" / last["fileid"]).rglob("*.png"))
    assert frames, "the tiny set's resized frames"
    frames[-1].unlink()
    work = copy_run(old_run, tmp_path)
    before = checksums(work)
    cfg = write_config(tiny_config(data, work, dataset_info={"dataset_root": str(raw)}), tmp_path / "c.yaml")
    assert main_module.cli(["--config", str(cfg), "--overwrite"]) == 2
    line = one_error_line(capsys)
    assert "videos of the dev split cannot be read" in line and last["fileid"] in line
    assert checksums(work) == before


# ----------------------------------------------------------------------------- evaluation's own folder


def test_evaluation_writes_its_own_folder_and_leaves_the_training_run_as_it_was(data, old_run, tmp_path):
    work = copy_run(old_run, tmp_path)
    before = checksums(work)
    test_cfg = write_config(tiny_config(data, work, phase="test", eval_splits=["dev"]), tmp_path / "t.yaml")
    summary = main_module.main(["--config", str(test_cfg), "--load-weights", str(work / "best_model.pt")])
    own = work / "eval_best_model"
    assert json.loads((own / "test_results.json").read_text())["dev_wer"] == summary["dev_wer"]
    assert (own / "eval" / "output-hypothesis-dev.ctm").is_file()
    after = checksums(work)
    assert {k: v for k, v in after.items() if k != MANIFEST and not k.startswith("eval_best_model/")} == \
        {k: v for k, v in before.items() if k != MANIFEST}
    assert "eval_best_model" in read_manifest(work)
    # The training run's --overwrite moves the evaluation's folder with the rest of the run.
    cfg = write_config(tiny_config(data, work, num_epoch=1, eval_splits=[]), tmp_path / "run.yaml")
    assert main_module.cli(["--config", str(cfg), "--overwrite"]) == 0
    assert not (work / "eval_best_model").exists() and not previous_dir(work).exists()


# ----------------------------------------------------------------------------- checks first (item 2)

BAD_VALUES = {
    "base_lr -1": (["--set", "optimizer_args.base_lr=-1"], "optimizer_args.base_lr"),
    "base_lr nan": (["--set", "optimizer_args.base_lr=.nan"], "optimizer_args.base_lr"),
    "num_worker -1": (["--set", "num_worker=-1"], "num_worker"),
    "input_size 0": (["--set", "feeder_args.input_size=0"], "input_size"),
    "input_size -48": (["--set", "feeder_args.input_size=-48"], "input_size"),
    "random_seed -5": (["--set", "random_seed=-5"], "random_seed"),
    "empty work dir": (["--work-dir", ""], "work_dir"),
}


def crafted(old_run: Path, tmp_path: Path, what: str) -> Path:
    """A copy of the old run's last.pt with one part of its training state crafted."""
    ckpt = torch.load(old_run / "last.pt", map_location="cpu", weights_only=False)
    if what == "train_state":
        ckpt["train_state"] = {"epoch": "zero", "evil": 1}
    elif what == "optimizer":
        state = ckpt["optimizer_state_dict"]["state"]
        first = next(iter(state))
        state[first] = {k: (torch.zeros(3, 3) if torch.is_tensor(v) and v.ndim else v)
                        for k, v in state[first].items()}
    elif what == "rng":
        ckpt["rng_state"] = ckpt["rng_state_per_rank"] = ["not", "a", "state"]
    elif what == "architecture":
        ckpt["model_state_dict"] = {k: v[..., :1] if v.ndim else v for k, v in ckpt["model_state_dict"].items()}
    path = tmp_path / f"crafted_{what}.pt"
    torch.save(ckpt, path)  # no checksum: loaded unverified, as a published checkpoint would be
    return path


@pytest.mark.parametrize("case", [*BAD_VALUES, "train_state", "optimizer", "rng", "architecture"])
def test_every_bad_value_is_one_line_before_the_old_run_moves(data, old_run, tmp_path, capsys, case):
    work = copy_run(old_run, tmp_path)
    before = checksums(work)
    cfg = write_config(tiny_config(data, work, num_epoch=2, eval_splits=["dev"]), tmp_path / "run.yaml")
    if case in BAD_VALUES:
        extra, named = BAD_VALUES[case]
    else:
        extra, named = ["--load-checkpoints", str(crafted(old_run, tmp_path, case))], "crafted_"
    for _ in range(2):  # a second attempt must not delete anything either
        assert main_module.cli(["--config", str(cfg), "--overwrite", *extra]) == 2
        assert named in one_error_line(capsys)
        assert checksums(work) == before and not previous_dir(work).exists()


def test_resuming_after_a_model_args_change_is_one_line_and_keeps_the_config(data, old_run, tmp_path, capsys):
    work = copy_run(old_run, tmp_path)
    before = checksums(work)
    cfg = write_config(tiny_config(data, work, num_epoch=2, eval_splits=["dev"],
                                   model_args={"hidden_size": 24}), tmp_path / "run.yaml")
    assert main_module.cli(["--config", str(cfg)]) == 2
    assert "does not fit the model" in one_error_line(capsys)
    assert checksums(work) == before


def test_overwrite_with_load_checkpoints_continues_that_state_in_a_fresh_run(data, old_run, tmp_path):
    work = copy_run(old_run, tmp_path)
    start = tmp_path / "start.pt"
    shutil.copy(work / "last.pt", start)
    cfg = write_config(tiny_config(data, work, num_epoch=2, eval_splits=[]), tmp_path / "run.yaml")
    summary = main_module.main(["--config", str(cfg), "--overwrite", "--load-checkpoints", str(start)])
    log = (work / "log.txt").read_text()
    assert f"resumed from {start} (end of epoch 0" in log and "moved the previous run" in log
    assert summary["global_step"] == 2 * torch.load(start, weights_only=False)["global_step"]
    assert not previous_dir(work).exists() and "epoch_0" not in read_manifest(work)


# ----------------------------------------------------------------------------- one run at a time (item 3)


def test_a_second_run_is_refused_naming_the_first(data, old_run, tmp_path, capsys):
    work = copy_run(old_run, tmp_path)
    first = WorkDirLock(work)
    first.acquire(print)
    before = checksums(work)
    cfg = write_config(tiny_config(data, work, num_epoch=2, eval_splits=[]), tmp_path / "run.yaml")
    for extra in ([], ["--overwrite"]):
        assert main_module.cli(["--config", str(cfg), *extra]) == 2
        line = one_error_line(capsys)
        assert f"is in use by another run (PID {os.getpid()} on host {socket.gethostname()}" in line
        assert checksums(work) == before
    first.release()
    assert not (work / LOCK).exists()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                             "started": "1"}))
    notes: list[str] = []
    lock = WorkDirLock(tmp_path)
    lock.acquire(notes.append)
    assert "no longer runs" in notes[0] and json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    lock.release()
    # A live process (this one's parent) on this host, or any on another host, holds it.
    parent = os.getppid()
    for holder in ({"pid": parent, "host": socket.gethostname(), "started": _start_time(parent)},
                   {"pid": 1, "host": "other-node"}):
        (tmp_path / LOCK).write_text(json.dumps(holder))
        with pytest.raises(ConfigError, match=f"PID {holder['pid']} on host {holder['host']}"):
            WorkDirLock(tmp_path).acquire(print)
