"""Atomic checkpoint writes and tolerant reads (utils/checkpoint.py)."""
from __future__ import annotations

import pytest
import torch

from tests.malicious_pickle import TouchesMarker
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
    with pytest.raises(ckpt_io.CheckpointError, match="bad.pt"):
        ckpt_io.load_checkpoint(bad)


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_model_state_strips_wrapper_prefixes(prefix):
    state = {f"{prefix}conv2d.alpha": torch.zeros(3), f"{prefix}classifier.weight": torch.ones(2, 2)}
    for ckpt in ({"model_state_dict": state}, state):
        out = ckpt_io.model_state_from_checkpoint(ckpt)
        assert sorted(out) == ["classifier.weight", "conv2d.alpha"]


def test_model_state_rejects_non_state_dict():
    with pytest.raises(ckpt_io.CheckpointError, match="model_state_dict"):
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


@pytest.mark.parametrize("layout", ["zip", "bare_pickle"])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, layout):
    import pickle

    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    payload = {"model_state_dict": {"w": torch.zeros(2)}, "extra": TouchesMarker(marker)}
    if layout == "zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(ckpt_io.UnsafeCheckpointError) as info:
        ckpt_io.load_checkpoint(path)
    message = str(info.value)
    assert "evil.pt" in message and "system" in message and ckpt_io.UNSAFE_OPTION in message
    assert not marker.exists()


def test_unsafe_option_loads_a_trusted_file_that_safe_loading_refuses(tmp_path):
    from fractions import Fraction

    path = tmp_path / "trusted.pt"
    torch.save({"model_state_dict": {"w": torch.ones(1)}, "ratio": Fraction(1, 3)}, path)
    with pytest.raises(ckpt_io.UnsafeCheckpointError, match="fractions.Fraction"):
        ckpt_io.load_checkpoint(path)
    assert ckpt_io.load_checkpoint(path, unsafe=True)["ratio"] == Fraction(1, 3)


@pytest.mark.parametrize("numpy_module", ["numpy._core", "numpy.core"])
def test_original_code_checkpoint_with_numpy_rng_state_loads_safely(tmp_path, numpy_module):
    """The original's save_model: epoch, weights, optimizer, scheduler, rng_state with NumPy's state.

    Written in torch's legacy (pre-1.6) stream format with protocol-2 text GLOBALs, so the NumPy 1.x
    module name (`numpy.core.multiarray`) of the original's era can be put in verbatim.
    """
    import random

    import numpy as np

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [40, 60])
    payload = {"epoch": 7, "model_state_dict": model.state_dict(),
               "optimizer_state_dict": optimizer.state_dict(),
               "scheduler_state_dict": scheduler.state_dict(),
               "rng_state": {"torch": torch.get_rng_state(), "cuda": [], "numpy": np.random.get_state(),
                             "random": random.getstate()}}
    path = tmp_path / "original.pt"
    torch.save(payload, path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", numpy_module.encode() + b".multiarray"))
    loaded = ckpt_io.load_checkpoint(path)
    assert loaded["epoch"] == 7
    assert np.array_equal(loaded["rng_state"]["numpy"][1], payload["rng_state"]["numpy"][1])
    assert torch.equal(loaded["model_state_dict"]["weight"], model.weight.detach())


def test_numpy_object_arrays_stay_refused(tmp_path):
    import numpy as np

    path = tmp_path / "objects.pt"
    torch.save({"a": np.array([{"k": 1}], dtype=object)}, path)
    with pytest.raises(ckpt_io.UnsafeCheckpointError, match="ObjectDType"):
        ckpt_io.load_checkpoint(path)
