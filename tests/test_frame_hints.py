"""Feeder errors for unusable resized frames: each names its case and a fix, and each fix is applied and works."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset.feeder import BaseFeeder
from dataset.hints import FramesError
from dataset.layout import frames_root, raw_frames_root, resized_resolutions, root_of_raw_frames
from dataset.registry import NAMES, dataset_spec
from dataset.synthetic import generate
from preprocess.cli import main as preprocess
from tests.train_support import make_feeder

FMT = "phoenix2014"
RES = "64x48px"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A tiny download with info files and frames resized to 64x48 (copied by each test)."""
    base = tmp_path_factory.mktemp("hints")
    generate(FMT, base / "root", size="tiny", seed=6)
    assert preprocess(FMT, ["--dataset-root", str(base / "root"), "--output-dir", str(base / "out"),
                            "--output-res", RES, "-p"]) == 0
    return base


@pytest.fixture
def data(prepared, tmp_path) -> dict:
    shutil.copytree(prepared, tmp_path, dirs_exist_ok=True)
    for split in ("train", "dev", "test"):  # the copy's info files record the copied download
        info = np.load(tmp_path / "out" / f"{split}_info.npy", allow_pickle=True).item()
        info["prefix"] = str(raw_frames_root(dataset_spec(FMT), tmp_path / "root"))
        np.save(tmp_path / "out" / f"{split}_info.npy", info, allow_pickle=True)
    return {"root": tmp_path / "root", "out": tmp_path / "out", "res": RES, "input_size": 40}


def _feeder(data: dict, **changes) -> BaseFeeder:
    data = {**data, **changes}
    gloss_dict = np.load(data["out"] / "gloss_dict.npy", allow_pickle=True).item()
    return make_feeder(str(data["root"]), gloss_dict, FMT, mode="train", transform_mode=False,
                       input_size=data["input_size"], info_dir=data["out"], frames_res=data["res"],
                       frames_dir=data.get("frames_dir"), temporal_min_len=4)


def _error(data: dict) -> str:
    """The message of reading every video of the train split (which must fail)."""
    feeder = _feeder(data)
    with pytest.raises(FramesError) as caught:
        for index in range(len(feeder)):
            feeder[index]
    return str(caught.value)


def _works(data: dict) -> None:
    feeder = _feeder(data)
    for index in range(len(feeder)):
        video = feeder[index][0]
        assert len(video) == feeder.inputs_list[index]["num_frames"]


def _command(message: str) -> list[str]:
    """The preprocessing command a hint says to run."""
    found = re.search(r"run (python \S+ .*?)(?:;|$)", message)
    assert found, message
    argv = shlex.split(found.group(1))
    assert argv[1] == "preprocess/dataset_preprocess.py" and "--process-image" in argv
    return argv


def _run_in_process(message: str) -> None:
    assert preprocess(FMT, _command(message)[2:]) == 0


def _setting(message: str) -> tuple[str, str]:
    """(key, value) of the `--set key=value` a hint proposes."""
    found = re.search(r"--set (\S+)=(\S+?)[);]?(?:\s|$)", message)
    assert found, message
    return found.group(1), found.group(2)


@pytest.mark.parametrize("wrong", ["missing", "parent"])
def test_wrong_root_points_at_the_download_the_info_files_came_from(wrong, data):
    configured = data["root"].parent / "nowhere" if wrong == "missing" else data["root"].parent
    message = _error({**data, "root": configured})
    assert f"dataset_info.dataset_root is {configured}, which holds no {FMT} frames" in message
    assert "--process-image" not in message  # preprocessing was done: do not send the user back there
    key, value = _setting(message)
    assert key == "dataset_info.dataset_root" and Path(value) == data["root"]
    _works({**data, "root": Path(value)})


def test_wrong_root_without_a_recorded_prefix_names_the_key(data):
    info = np.load(data["out"] / "train_info.npy", allow_pickle=True).item()
    del info["prefix"]  # info files of the original CSL-Daily tools have none
    np.save(data["out"] / "train_info.npy", info, allow_pickle=True)
    message = _error({**data, "root": data["root"] / "sub"})
    assert "set dataset_info.dataset_root to the folder given to the preprocess script as --dataset-root" in message
    assert dataset_spec(FMT).default_root in message and "--process-image" not in message


@pytest.mark.parametrize("fix", ["resize", "use-existing"])
def test_other_resolution_says_so_and_both_fixes_work(fix, data):
    """Like config/demo.yaml (56x56 frames) over a download preprocessed at another size."""
    message = _error({**data, "res": "56x56px"})
    assert "no frames resized to 56x56px (feeder_args.frames_res)" in message and "64x48px" in message
    if fix == "resize":
        argv = _command(message)
        assert argv[argv.index("--output-res") + 1] == "56x56px" and "--redo" not in argv
        _run_in_process(message)
        _works({**data, "res": "56x56px"})
        assert _feeder({**data, "res": "56x56px"})[0][0].shape[-2:] == (40, 40)
    else:
        assert _setting(message) == ("feeder_args.frames_res", RES) and "83 % of their shorter side" in message
        _works({**data, "res": RES})


def test_other_resolution_smaller_than_the_crop_is_not_offered(data):
    message = _error({**data, "res": "256x256px", "input_size": 224})
    assert "--set feeder_args.frames_res" not in message and "--output-res 256x256px" in message


def test_never_resized(data):
    shutil.rmtree(frames_root(dataset_spec(FMT), data["root"], RES))
    message = _error(data)
    assert "were never resized to 64x48px" in message and "--redo" not in _command(message)
    _run_in_process(message)
    _works(data)


def test_missing_video_folder(data):
    feeder = _feeder(data)
    shutil.rmtree(Path(feeder.frame_files(2)[0]).parent)
    message = _error(data)
    fileid = feeder.inputs_list[2]["fileid"]
    assert f"no resized frames for video {fileid!r}" in message and _command(message)[-2:] == ["--redo", fileid]
    _run_in_process(message)
    _works(data)


def test_corrupt_frame_names_a_command_that_repairs_it(data, repo_root):
    feeder = _feeder(data)
    frame = Path(feeder.frame_files(1)[3])
    good = frame.read_bytes()
    stat = frame.stat()
    frame.write_bytes(b"\0" * len(good))  # same size and time: only the named --redo finds it
    os.utime(frame, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    message = _error(data)
    fileid = feeder.inputs_list[1]["fileid"]
    assert f"cannot read image {frame}" in message and _command(message)[-2:] == ["--redo", fileid]
    result = subprocess.run([sys.executable, *_command(message)[1:]], cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert frame.read_bytes() == good
    _works(data)


def test_stale_extra_frames_are_caught_and_the_command_removes_them(data):
    feeder = _feeder(data)
    files = feeder.frame_files(0)
    extra = Path(files[-1]).with_name(Path(files[-1]).name.replace("-0.png", "-9.png"))
    shutil.copy(files[-1], extra)  # as an older, longer version of the video would leave
    message = _error(data)
    assert f"has {len(files) + 1} resized frames" in message and f"says {len(files)}" in message
    _run_in_process(message)
    assert not extra.exists()
    _works(data)


@pytest.mark.parametrize("fmt", NAMES)
def test_layout_helpers_for_every_dataset(fmt, tmp_path):
    spec = dataset_spec(fmt)
    raw = raw_frames_root(spec, tmp_path)
    for tag in ("256x256px", "56x56px"):
        frames_root(spec, tmp_path, tag).mkdir(parents=True)
    raw.mkdir(parents=True, exist_ok=True)  # CSL: the root itself
    (frames_root(spec, tmp_path, "1x1px").parent / "unrelated").mkdir()
    assert resized_resolutions(spec, tmp_path) == ["256x256px", "56x56px"]
    other = tmp_path / "x" / "y"  # CSL's raw frames (a table's videos) are its root: any folder is the root of its own
    assert root_of_raw_frames(spec, raw) == tmp_path
    assert root_of_raw_frames(spec, other) == (other if fmt in ("CSL", "table") else None)
