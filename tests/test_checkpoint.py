"""Atomic checkpoint writes and tolerant reads (utils/checkpoint.py)."""
from __future__ import annotations

import pytest
import torch

from utils import checkpoint as ckpt_io


def test_roundtrip_and_no_temp_files_left(tmp_path):
    path = tmp_path / "run" / "last.pt"
    ckpt_io.save_checkpoint(path, {"epoch": 3, "w": torch.arange(4)})
    loaded = ckpt_io.load_checkpoint(path)
    assert loaded["epoch"] == 3
    assert torch.equal(loaded["w"], torch.arange(4))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_crash_during_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt_io.save_checkpoint(path, {"epoch": 1})

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"partial bytes")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt_io.save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert ckpt_io.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_missing_and_damaged_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        ckpt_io.load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="bad.pt"):
        ckpt_io.load_checkpoint(bad)


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_model_state_strips_wrapper_prefixes(prefix):
    state = {f"{prefix}conv2d.alpha": torch.zeros(3), f"{prefix}classifier.weight": torch.ones(2, 2)}
    for ckpt in ({"model_state_dict": state}, state):
        out = ckpt_io.model_state_from_checkpoint(ckpt)
        assert sorted(out) == ["classifier.weight", "conv2d.alpha"]


def test_model_state_rejects_non_state_dict():
    with pytest.raises(RuntimeError, match="model_state_dict"):
        ckpt_io.model_state_from_checkpoint({1: 2})


def test_shape_mismatches_lists_only_shared_keys_with_other_shapes():
    model = {"a": torch.zeros(2, 3), "b": torch.zeros(4), "c": torch.zeros(1)}
    state = {"a": torch.zeros(3, 2), "b": torch.zeros(4), "extra": torch.zeros(5)}
    assert ckpt_io.shape_mismatches(model, state) == ["a: checkpoint (3, 2) vs model (2, 3)"]


def test_atomic_path_replaces_on_success_and_cleans_up_on_error(tmp_path):
    from utils.atomic import atomic_path

    target = tmp_path / "sub" / "file.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert not target.exists()  # nothing visible until the block succeeds
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]
