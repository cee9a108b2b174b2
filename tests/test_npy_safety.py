"""Pickled .npy files (gloss dictionaries, info files) are read as plain data only: nothing they name runs."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from dataset.feeder import load_info
from dataset.vocabulary import load_gloss_dict
from tests.malicious_pickle import TouchesMarker
from utils.npy import UnsafePickleError, load_npy, load_npy_object


def _save(path, obj) -> None:
    np.save(path, obj, allow_pickle=True)


def test_plain_dicts_read_as_np_load_reads_them(tmp_path):
    obj = {"A": [1, 5], "B": (2, np.int64(3)), 0: {"fileid": "x", "num_frames": np.int32(7),
                                                    "features": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    _save(tmp_path / "d.npy", obj)
    ours, theirs = load_npy_object(tmp_path / "d.npy"), np.load(tmp_path / "d.npy", allow_pickle=True).item()
    assert ours.keys() == theirs.keys() and ours["A"] == theirs["A"] and ours["B"] == theirs["B"]
    assert type(ours["B"][1]) is np.int64 and type(ours[0]["num_frames"]) is np.int32
    np.testing.assert_array_equal(ours[0]["features"], theirs[0]["features"])


def test_numeric_arrays_need_no_pickle(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.int16).reshape(3, 4))
    np.testing.assert_array_equal(load_npy(tmp_path / "a.npy"), np.arange(12, dtype=np.int16).reshape(3, 4))


def test_numpy1_module_paths_read(tmp_path):
    """Files written by numpy 1.x name numpy.core.multiarray; they must still load under numpy 2."""
    payload = pickle.dumps(np.array({"A": [1, np.int64(4)]}, dtype=object), protocol=2)
    assert b"numpy._core.multiarray\n" in payload  # protocol 2 names globals as text lines
    old = payload.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": ()})
    (tmp_path / "old.npy").write_bytes(buffer.getvalue() + old)
    assert load_npy_object(tmp_path / "old.npy") == {"A": [1, 4]}


@pytest.mark.parametrize("reader", [load_npy_object, load_gloss_dict, load_info])
def test_a_crafted_pickle_runs_nothing_and_names_the_file(tmp_path, reader):
    marker = tmp_path / "pwned"
    path = tmp_path / "gloss_dict.npy"
    _save(path, {"A": [1, 1], "payload": TouchesMarker(marker)})
    with pytest.raises(UnsafePickleError) as err:
        reader(path)
    assert not marker.exists()
    message = str(err.value)
    assert str(path) in message and "posix.system" in message and "preprocess/" in message
