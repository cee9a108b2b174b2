"""Checkpoint integrity: checksums every load verifies, separate backup files, best_model.pt and
last.pt consistent after a kill between their writes, and a full disk during a save."""
from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import utils.checkpoint as checkpoint_module
from training import checkpoints
from training.checkpoints import BEST, LAST, PREVIOUS, epoch_name
from training.run import Run
from utils.checkpoint import (CHECKSUM_KEY, CheckpointError, CheckpointSpaceError, load_checkpoint,
                              payload_digest, save_checkpoint)


def make_run(work_dir: Path, seed: int = 0) -> Run:
    """A small run: a linear model, SGD, a step scheduler, logging into a list."""
    torch.manual_seed(seed)
    core = nn.Linear(64, 32)
    optimizer = torch.optim.SGD(core.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    lines: list[str] = []
    return Run(core=core, optimizer=optimizer, scheduler=scheduler, log=lines.append,
               work_dir=work_dir, cfg={"phase": "train", "load_checkpoints": None}, gloss_dict={"A": [1, 1]})


def finish_epoch(run: Run, epoch: int, wer: float | None = None) -> list[str]:
    """Change the weights, mark `epoch` done (a new best when `wer` beats it); the names to save."""
    with torch.no_grad():
        for p in run.core.parameters():
            p.add_(0.01 * (epoch + 1))
    run.state.epoch, run.state.epoch_complete = epoch, True
    names = [LAST]
    if wer is not None and wer < run.state.best_dev_wer:
        run.state.best_dev_wer, run.state.best_epoch = wer, epoch
        names.append(BEST)
    return names


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model_state_dict"]


def test_checksum_round_trip_and_payload_unchanged(tmp_path):
    payload = {"model_state_dict": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.bfloat16)},
               "epoch": 3, "rng": (1, [2.5, None], "x"), "best": float("inf")}
    save_checkpoint(tmp_path / "c.pt", payload)
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    assert raw[CHECKSUM_KEY]["sha256"] == payload_digest(payload)[0]
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert CHECKSUM_KEY not in loaded and loaded.keys() == payload.keys()
    assert torch.equal(loaded["model_state_dict"]["w"], payload["model_state_dict"]["w"])
    assert loaded["rng"] == payload["rng"]


def test_digest_sees_every_value():
    base = {"w": torch.zeros(4), "epoch": 1}
    digest = payload_digest(base)[0]
    assert payload_digest({"w": torch.zeros(4), "epoch": 1})[0] == digest
    for changed in ({"w": torch.zeros(4), "epoch": 2}, {"w": torch.zeros(2, 2), "epoch": 1},
                    {"w": torch.zeros(4, dtype=torch.float64), "epoch": 1},
                    {"w": torch.tensor([0.0, 0.0, 0.0, 1e-30]), "epoch": 1}):
        assert payload_digest(changed)[0] != digest


def test_published_checkpoint_without_checksum_loads_with_a_note(tmp_path):
    torch.save({"model_state_dict": {"w": torch.ones(2)}}, tmp_path / "published.pt")
    notes: list[str] = []
    ckpt = load_checkpoint(tmp_path / "published.pt", log=notes.append)
    assert torch.equal(ckpt["model_state_dict"]["w"], torch.ones(2))
    assert len(notes) == 1 and "published.pt carries no checksum" in notes[0]


def flip(path: Path, offset: int, count: int = 16) -> None:
    """Invert `count` bytes of the file from `offset`."""
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_bit_flips_in_last_are_refused_by_name_and_resume_falls_back(tmp_path):
    run = make_run(tmp_path)
    checkpoints.save(run, *finish_epoch(run, 0))
    checkpoints.save(run, *finish_epoch(run, 1))      # last.pt (epoch 1), last_previous.pt (epoch 0)
    good = (tmp_path / LAST).read_bytes()
    expected = load_checkpoint(tmp_path / LAST)
    size, refused = len(good), 0
    for fraction in (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95):
        (tmp_path / LAST).write_bytes(good)
        flip(tmp_path / LAST, int(size * fraction))
        try:
            ckpt = load_checkpoint(tmp_path / LAST)
        except CheckpointError as exc:
            assert str(tmp_path / LAST) in str(exc)
            refused += 1
            resumed = make_run(tmp_path, seed=1)
            path, ckpt = checkpoints.read_resume_checkpoint(resumed, tmp_path / LAST)
            assert path == tmp_path / PREVIOUS and ckpt["train_state"]["epoch"] == 0
            assert any("is damaged" in line for line in resumed.log.__self__)
            continue
        # Flipped bytes that change nothing loaded (zip header fields) are harmless.
        assert all(torch.equal(ckpt["model_state_dict"][k], v) for k, v in expected["model_state_dict"].items())
        assert ckpt["train_state"] == expected["train_state"]
    assert refused >= 5  # the tensor data and the pickle, where silent damage would hurt


def test_backups_are_separate_files(tmp_path):
    run = make_run(tmp_path)
    checkpoints.save(run, *finish_epoch(run, 0, wer=50.0), epoch_name(0))
    checkpoints.save(run, *finish_epoch(run, 1, wer=40.0), epoch_name(1))
    names = [LAST, PREVIOUS, BEST, epoch_name(0), epoch_name(1)]
    inodes = {os.stat(tmp_path / n).st_ino for n in names}
    assert len(inodes) == len(names) and all(os.stat(tmp_path / n).st_nlink == 1 for n in names)
    flip(tmp_path / LAST, len((tmp_path / LAST).read_bytes()) // 2)  # damage one: the others load
    for name in names[1:]:
        load_checkpoint(tmp_path / name)
    assert torch.equal(weights(tmp_path / BEST)["weight"], weights(tmp_path / epoch_name(1))["weight"])


class Killed(Exception):
    """Stands for a kill -9 between two writes."""


def test_kill_between_best_and_last_leaves_them_consistent_after_resume(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    checkpoints.save(run, *finish_epoch(run, 0, wer=50.0))
    real = checkpoints.save_checkpoint

    def killed_before_last(path, content, previous=None):
        if Path(path).name == LAST:
            raise Killed
        real(path, content, previous)

    monkeypatch.setattr(checkpoints, "save_checkpoint", killed_before_last)
    with pytest.raises(Killed):
        checkpoints.save(run, *finish_epoch(run, 1, wer=40.0))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / LAST)["train_state"]["best_epoch"] == 0  # the kill's moment
    assert load_checkpoint(tmp_path / BEST)["train_state"]["epoch"] == 1
    resumed = make_run(tmp_path, seed=1)
    checkpoints.resume(resumed, checkpoints.resume_path(resumed.cfg, tmp_path))
    best = load_checkpoint(tmp_path / BEST)["train_state"]
    assert (resumed.state.epoch, resumed.state.best_epoch, resumed.state.best_dev_wer) == (0, 1, 40.0)
    assert (best["epoch"], best["best_dev_wer"]) == (resumed.state.best_epoch, resumed.state.best_dev_wer)
    # The replayed epoch 1 scores no better: best_model.pt stays, and so does the agreement.
    checkpoints.save(resumed, *finish_epoch(resumed, 1, wer=40.0))
    last = load_checkpoint(tmp_path / LAST)["train_state"]
    assert (last["best_epoch"], last["best_dev_wer"]) == (best["epoch"], best["best_dev_wer"])


def test_resume_repairs_a_best_model_that_was_never_written(tmp_path):
    """The former write order (last.pt, then best_model.pt) killed in between: last.pt is the best."""
    run = make_run(tmp_path)
    checkpoints.save(run, *finish_epoch(run, 0, wer=50.0))
    names = finish_epoch(run, 1, wer=40.0)
    checkpoints.save(run, *[n for n in names if n != BEST])
    resumed = make_run(tmp_path, seed=1)
    checkpoints.resume(resumed, tmp_path / LAST)
    assert load_checkpoint(tmp_path / BEST)["train_state"]["epoch"] == 1
    assert torch.equal(weights(tmp_path / BEST)["weight"], weights(tmp_path / LAST)["weight"])


class FullDisk(io.FileIO):
    """A file on a disk that fills up after `room` bytes."""

    room = 1000

    def write(self, data) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


@pytest.mark.parametrize("where", ["write", "copy"])
def test_full_disk_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where):
    run = make_run(tmp_path)
    checkpoints.save(run, *finish_epoch(run, 0))
    checkpoints.save(run, *finish_epoch(run, 1))
    before = {n: (tmp_path / n).read_bytes() for n in (LAST, PREVIOUS)}
    names = finish_epoch(run, 2) + [epoch_name(2)]
    if where == "write":
        monkeypatch.setattr(checkpoint_module, "open", lambda path, mode: FullDisk(path, mode.replace("b", "")),
                            raising=False)
    else:
        def full(src, dst, length=0):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr("utils.atomic.shutil.copyfileobj", full)
    with pytest.raises(CheckpointSpaceError) as caught:
        checkpoints.save(run, *names)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message and " bytes" in message
    assert (caught.value.__cause__, caught.value.__suppress_context__) == (None, True)
    if where == "write":
        assert {n: (tmp_path / n).read_bytes() for n in (LAST, PREVIOUS)} == before
    else:  # last.pt was written; the copy that failed left nothing behind
        assert load_checkpoint(tmp_path / LAST)["train_state"]["epoch"] == 2
        assert not (tmp_path / epoch_name(2)).exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
