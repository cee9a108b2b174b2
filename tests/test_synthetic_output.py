"""The synthetic generator's output folder: non-empty refused, --replace removes only its own files.

Also: `make demo-data` reruns.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset.generated import OWNER_RECORD, OutputFolderError
from dataset.layout import frames_root, raw_frames_root
from dataset.registry import dataset_spec
from dataset.synthetic import generate, main


def _digest(root: Path, skip: tuple[str, ...] = ()) -> str:
    """Hash of every file's relative path and bytes under `root`, leaving out paths starting with `skip`."""
    sha = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = str(path.relative_to(root))
        if not relative.startswith(skip):
            sha.update(relative.encode() + path.read_bytes())
    return sha.hexdigest()


def _cli(out: Path, *extra: str, seed: int = 0) -> int:
    return main(["--format", "phoenix2014", "--out", str(out), "--size", "tiny", "--seed", str(seed),
                 "--workers", "1", *extra])


def test_non_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert _cli(tmp_path) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path} is not empty (notes.txt)" in err and "--replace" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    with pytest.raises(OutputFolderError, match="not empty"):
        generate("CSL-Daily", tmp_path)


def test_replace_removes_only_generated_files(tmp_path, capsys):
    out = tmp_path / "data"
    assert _cli(out, seed=1) == 0
    video_dir = next(raw_frames_root(dataset_spec("phoenix2014"), out).rglob("*.png")).parent
    (video_dir / "my_notes.txt").write_text("keep")  # a user's file inside a generated folder
    (out / "annotations" / "README").write_text("keep")
    resized = frames_root(dataset_spec("phoenix2014"), out, "56x56px") / "x.png"  # a preprocessing output
    resized.parent.mkdir(parents=True)
    resized.write_bytes(b"resized")
    assert _cli(out, seed=2) == 2  # still refused without --replace
    assert _cli(out, "--replace", seed=2) == 0
    generate("phoenix2014", tmp_path / "fresh", "tiny", seed=2)
    mine = ("features/fullFrame-56x56px", "annotations/README", str(video_dir.relative_to(out) / "my_notes.txt"))
    assert _digest(out, skip=mine) == _digest(tmp_path / "fresh")  # no old frame or annotation left
    assert (video_dir / "my_notes.txt").read_text() == "keep" and (out / "annotations" / "README").is_file()
    assert resized.read_bytes() == b"resized"


def test_replace_deletes_nothing_it_did_not_write(tmp_path, capsys):
    shutil.copytree(Path(__file__).parent, tmp_path / "download" / "tests")
    before = _digest(tmp_path)
    assert _cli(tmp_path / "download", "--replace") == 2
    assert f"has no {OWNER_RECORD}" in capsys.readouterr().err
    assert _digest(tmp_path) == before
    out = tmp_path / "own"
    assert _cli(out) == 0
    record = json.loads((out / OWNER_RECORD).read_text())
    record["files"].append("../download/tests/conftest.py")  # a damaged record must not reach outside
    (out / OWNER_RECORD).write_text(json.dumps(record))
    assert _cli(out, "--replace") == 2
    assert "outside the folder" in capsys.readouterr().err
    assert (tmp_path / "download" / "tests" / "conftest.py").is_file()


def _make_demo_data(repo_root: Path, demo_dir: Path, seed: int) -> str:
    """Run the Makefile's demo data steps (without reinstalling the venv); returns the resize summary."""
    result = subprocess.run(["make", "-s", "-o", ".venv/.installed", "demo-data", f"DEMO_DIR={demo_dir}",
                             "DEMO_SIZE=tiny", f"DEMO_SEED={seed}", f"PY={sys.executable}"],
                            cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return next(line for line in result.stdout.splitlines() if line.startswith("videos:"))


def _frames_per_video(demo_dir: Path) -> dict[str, list[bytes]]:
    """fileid -> the resized frames the feeder reads (its info folder glob), in order."""
    root = demo_dir / "phoenix2014"
    videos = {}
    for split in ("train", "dev", "test"):
        info = np.load(demo_dir / "preprocess" / f"{split}_info.npy", allow_pickle=True).item()
        for key in range(len(info) - 1):
            entry = info[key]
            frames = sorted(frames_root(dataset_spec("phoenix2014"), root, "56x56px").glob(entry["folder"]))
            assert len(frames) == entry["num_frames"]
            videos[entry["fileid"]] = [p.read_bytes() for p in frames]
    return videos


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_data_rerun_with_other_frames_gives_fresh_frames(repo_root, tmp_path):
    """`make demo` over an earlier demo with other videos (as DEMO_SIZE=tiny after small): fresh frames only."""
    first, fresh = tmp_path / "demo", tmp_path / "fresh"
    _make_demo_data(repo_root, first, seed=1)
    old = _frames_per_video(first)
    summary = _make_demo_data(repo_root, first, seed=0)
    assert "(0 resized, 8 redone, 0 up to date)" in summary
    _make_demo_data(repo_root, fresh, seed=0)
    new = _frames_per_video(first)
    assert new == _frames_per_video(fresh)
    assert any(len(new[v]) != len(old[v]) for v in new)  # frame counts changed, so stale extras were possible
    assert "(0 resized, 0 redone, 8 up to date)" in _make_demo_data(repo_root, first, seed=0)  # plain rerun
