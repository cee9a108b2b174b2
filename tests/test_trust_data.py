"""main.py's start-up checks of the data (empty splits, data of another dataset, videos too short
for their glosses) and a corrupt pack frame met in a DataLoader worker: one `error:` line each."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import main as main_module
from dataset.packed import packed_paths
from tests.train_support import REPO_ROOT, make_tiny_dataset, tiny_config, write_config
from training.run import build_run
from utils.config import resolve_config
from utils.distributed import shutdown


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return make_tiny_dataset(tmp_path_factory.mktemp("trust_data"))


def _copy(data: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """A private copy of the tiny dataset (raw frames, resized frames and preprocessed files)."""
    return {key: Path(shutil.copytree(path, tmp_path / key)) for key, path in data.items()}


def _error_line(cfg: dict, tmp_path: Path, capsys, *args: str) -> str:
    """main.py's stderr for `cfg`: exactly one `error:` line and exit status 2."""
    path = write_config(cfg, tmp_path / "cfg.yaml")
    assert main_module.cli(["--config", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_empty_split_is_one_error_line(data, tmp_path, capsys):
    copy = _copy(data, tmp_path)
    info = np.load(copy["pre"] / "dev_info.npy", allow_pickle=True).item()
    np.save(copy["pre"] / "dev_info.npy", {"prefix": info["prefix"]}, allow_pickle=True)
    err = _error_line(tiny_config(copy, tmp_path / "work"), tmp_path, capsys)
    assert "the dev split has no videos" in err and "dev_info.npy" in err


def test_data_of_another_dataset_is_refused_naming_both(data, tmp_path, capsys):
    cfg = tiny_config(data, tmp_path / "work", dataset="phoenix2014-T",
                      dataset_info={"evaluation_prefix": "phoenix2014-groundtruth"})
    err = _error_line(cfg, tmp_path, capsys)
    assert "--dataset phoenix2014-T" in err and "is phoenix2014 data" in err and "dataset.json" in err
    assert not (tmp_path / "work").exists()


def test_videos_too_short_for_their_glosses_are_warned_at_startup(data, tmp_path):
    copy = _copy(data, tmp_path)
    info = np.load(copy["pre"] / "dev_info.npy", allow_pickle=True).item()
    key = next(k for k, e in info.items() if k != "prefix" and k > 0 and len(e["label"].split()) >= 2)
    entry = info[key]
    frames = sorted((copy["raw"] / "features" / "fullFrame-64x64px").glob(entry["folder"]))
    for frame in frames[1:]:  # the video cut to one frame
        frame.unlink()
    info[key] = {**entry, "num_frames": 1}
    np.save(copy["pre"] / "dev_info.npy", info, allow_pickle=True)
    cfg, _ = resolve_config(["--config", str(write_config(tiny_config(copy, tmp_path / "work"), tmp_path / "c.yaml"))])
    try:
        build_run(cfg).lock.release()
    finally:
        shutdown()
    log = (tmp_path / "work" / "log.txt").read_text() if (tmp_path / "work" / "log.txt").exists() else ""
    glosses = len(entry["label"].split())
    assert (f"warning: 1 of the {len(info) - 1} videos of the dev split are too short for their glosses after "
            f"temporal pooling ({entry['fileid']}: 1 frames leave 1 steps for {glosses} glosses, which need") in log
    assert "dev_info.npy: no record of their dataset" in log  # changed after preprocessing: not checked


def test_corrupt_pack_frame_read_in_a_worker_is_one_error_line(data, tmp_path, capsys):
    copy = _copy(data, tmp_path)
    subprocess.run([sys.executable, "preprocess/dataset_preprocess.py", "--dataset-root", str(copy["raw"]),
                    "--output-dir", str(copy["pre"]), "--output-res", "64x64px", "--pack"],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    paths = packed_paths(copy["pre"] / "packed-64x64px", "train")
    first = np.load(copy["pre"] / "train_info.npy", allow_pickle=True).item()[0]["fileid"]
    start, count = json.loads(paths.index.read_text())["videos"][first]
    frames = bytearray(paths.data("jpeg").read_bytes())
    for row, (offset, length, _) in enumerate(np.load(paths.table)):
        if not start <= row < start + count:  # every video but the one the start-up check reads
            frames[offset + length // 2] ^= 0xFF
    paths.data("jpeg").write_bytes(bytes(frames))
    cfg = tiny_config(copy, tmp_path / "work", num_worker=1, num_epoch=1, eval_splits=[],
                      feeder_args={"packed": True})
    err = _error_line(cfg, tmp_path, capsys)
    assert "is corrupt (its bytes do not match their CRC-32)" in err and "--repack" in err


@pytest.fixture(scope="module")
def packed(data, tmp_path_factory) -> dict[str, Path]:
    """A copy of the tiny dataset with a jpeg pack of its resized frames."""
    copy = _copy(data, tmp_path_factory.mktemp("packed"))
    subprocess.run([sys.executable, "preprocess/dataset_preprocess.py", "--dataset-root", str(copy["raw"]),
                    "--output-dir", str(copy["pre"]), "--output-res", "64x64px", "--pack"],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    return copy


def _two_videos_of_equal_length(index: dict) -> tuple[str, str]:
    by_count: dict[int, str] = {}
    for fileid, (_, count) in index["videos"].items():
        if count in by_count:
            return by_count[count], fileid
        by_count[count] = fileid
    raise AssertionError("the tiny set has two training videos of one length")


@pytest.mark.parametrize("case", ["swapped", "other folder", "other's frames", "shortened", "repeated row"])
def test_an_inconsistent_pack_index_is_refused_naming_pack_and_video(packed, tmp_path, capsys, case):
    pack = Path(shutil.copytree(packed["pre"] / "packed-64x64px", tmp_path / "pack"))
    paths = packed_paths(pack, "train")
    index = json.loads(paths.index.read_text())
    videos = index["videos"]
    a, b = _two_videos_of_equal_length(index)  # a swap of these keeps every frame count
    if case == "swapped":
        videos[a], videos[b] = videos[b], videos[a]
        expected = [str(pack), "entries swapped", repr(a)]
    elif case == "other folder":
        index["folders"][a] = index["folders"][b]
        expected = [str(pack), repr(a), "is packed from the folder"]
    elif case == "other's frames":
        videos[a] = list(videos[b])
        expected = [str(paths.index), "overlap", a, b]
    elif case == "shortened":
        videos[a][1] -= 1
        expected = [str(pack), repr(a), f"{videos[a][1]} frames in the pack but {videos[a][1] + 1}"]
    else:
        table = np.load(paths.table)
        row = videos[a][0] + 1
        table[row] = table[row - 1]
        with open(paths.table, "wb") as handle:
            np.save(handle, table)
        expected = [str(paths.table), f"video {a!r}, frame 1", "not strictly increasing"]
    paths.index.write_text(json.dumps(index))
    cfg = tiny_config(packed, tmp_path / "work", num_epoch=1, eval_splits=[],
                      feeder_args={"packed": True, "packed_dir": str(pack)})
    err = _error_line(cfg, tmp_path, capsys)
    assert all(part in err for part in expected), err
    assert not (tmp_path / "work").exists()
