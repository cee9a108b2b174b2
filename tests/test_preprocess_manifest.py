"""Resize manifests: reruns redo changed sources, damaged outputs, named videos and unverifiable old output."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset.layout import frames_root, raw_frames_root
from dataset.registry import dataset_spec
from dataset.synthetic import generate
from preprocess.cli import main
from dataset.layout import MANIFEST
from preprocess.manifest import MANIFEST_VERSION

RES = "48x40px"
FMT = "phoenix2014"


@pytest.fixture(scope="module")
def raw_pair(tmp_path_factory) -> dict[int, Path]:
    """Two tiny downloads with the same video names but other frames (and frame counts): seeds 3 and 4."""
    base = tmp_path_factory.mktemp("manifest")
    sets = {}
    for seed in (3, 4):
        generate(FMT, base / str(seed), size="tiny", seed=seed)
        sets[seed] = base / str(seed)
    return sets


def _run(root: Path, out: Path, *extra: str) -> int:
    return main(FMT, ["--dataset-root", str(root), "--output-dir", str(out), "--output-res", RES,
                      "--process-image", *extra])


def _summary(capsys) -> str:
    return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("videos:"))


def _entries(out: Path, split: str = "train") -> list[dict]:
    info = np.load(out / f"{split}_info.npy", allow_pickle=True).item()
    return [info[i] for i in range(len(info) - 1)]


def _resized(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every resized frame (manifests excluded)."""
    top = frames_root(dataset_spec(FMT), root, RES)
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*.png"))}


def _prepared(raw_pair, seed: int, tmp_path: Path) -> tuple[Path, Path]:
    root = Path(shutil.copytree(raw_pair[seed], tmp_path / "root"))
    out = tmp_path / "out"
    assert _run(root, out) == 0
    return root, out


def _video_dir(root: Path, out: Path, index: int = 0) -> tuple[Path, Path]:
    """(raw folder, resized folder) of train video `index`."""
    folder = Path(_entries(out)[index]["folder"]).parent
    return raw_frames_root(dataset_spec(FMT), root) / folder, frames_root(dataset_spec(FMT), root, RES) / folder


def test_replaced_download_is_redone_to_fresh_frames(raw_pair, tmp_path, capsys):
    """The issue's case: a regenerated download in the same folder (other frames and frame counts)."""
    root, out = _prepared(raw_pair, 3, tmp_path)
    old = _resized(root)
    shutil.rmtree(raw_frames_root(dataset_spec(FMT), root).parent.parent / "annotations")
    shutil.rmtree(raw_frames_root(dataset_spec(FMT), root))
    shutil.copytree(raw_pair[4] / "annotations", root / "annotations")
    shutil.copytree(raw_frames_root(dataset_spec(FMT), raw_pair[4]), raw_frames_root(dataset_spec(FMT), root))
    capsys.readouterr()
    assert _run(root, out) == 0
    assert "(0 resized, 8 redone, 0 up to date)" in _summary(capsys)
    fresh_root, _ = _prepared(raw_pair, 4, tmp_path / "fresh")
    assert _resized(root) == _resized(fresh_root) != old  # same files, same bytes: no stale frame left
    for entry in _entries(out):
        assert len(list(frames_root(dataset_spec(FMT), root, RES).glob(entry["folder"]))) == entry["num_frames"]


def test_one_changed_source_frame_redoes_only_its_video(raw_pair, tmp_path, capsys):
    root, out = _prepared(raw_pair, 3, tmp_path)
    src, dst = _video_dir(root, out, 1)
    frame = sorted(src.glob("*.png"))[2]
    image = cv2.imread(str(frame))
    cv2.imwrite(str(frame), 255 - image)
    capsys.readouterr()
    assert _run(root, out) == 0
    out_text = capsys.readouterr().out
    assert "(0 resized, 1 redone, 7 up to date)" in out_text
    assert f"redone, source frames changed: 1 ({_entries(out)[1]['fileid']})" in out_text and frame.name in out_text
    expected = cv2.resize(255 - image, (48, 40), interpolation=cv2.INTER_LANCZOS4)
    assert np.array_equal(cv2.imread(str(dst / frame.name)), expected)


def test_touched_sources_are_hashed_not_resized(raw_pair, tmp_path, capsys):
    """A copy that does not keep modification times costs a hash check, not a resize."""
    root, out = _prepared(raw_pair, 3, tmp_path)
    for frame in raw_frames_root(dataset_spec(FMT), root).rglob("*.png"):
        os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
    before = _resized(root)
    capsys.readouterr()
    assert _run(root, out) == 0
    assert "(0 resized, 0 redone, 8 up to date)" in _summary(capsys)
    assert _resized(root) == before
    src, dst = _video_dir(root, out)
    record = json.loads((dst / MANIFEST).read_text())
    name = sorted(record["sources"])[0]
    assert record["sources"][name][1] == (src / name).stat().st_mtime_ns  # refreshed: next run is stat-only


@pytest.mark.parametrize("damage", ["garbage", "truncated", "deleted", "extra"])
def test_damaged_output_frame_is_redone(damage, raw_pair, tmp_path, capsys):
    root, out = _prepared(raw_pair, 3, tmp_path)
    fresh = _resized(root)
    _src, dst = _video_dir(root, out, 2)
    frame = sorted(dst.glob("*.png"))[1]
    if damage == "garbage":
        frame.write_bytes(b"\x89PNG not really" + bytes(frame.stat().st_size - 15))  # same size, new content
    elif damage == "truncated":
        frame.write_bytes(frame.read_bytes()[:100])
    elif damage == "deleted":
        frame.unlink()
    else:  # a frame the feeder would read although these sources never made it
        shutil.copy(frame, dst / frame.name.replace("fn000001", "fn000999"))
    capsys.readouterr()
    assert _run(root, out) == 0
    out_text = capsys.readouterr().out
    assert "(0 resized, 1 redone, 7 up to date)" in out_text
    assert "redone, resized frames missing or damaged: 1" in out_text
    assert _resized(root) == fresh


def test_redo_option_and_verify_find_damage_that_kept_its_time(raw_pair, tmp_path, capsys):
    root, out = _prepared(raw_pair, 3, tmp_path)
    fresh = _resized(root)
    _src, dst = _video_dir(root, out, 3)
    frame = sorted(dst.glob("*.png"))[0]
    stat = frame.stat()
    data = bytearray(frame.read_bytes())
    data[-20] ^= 0xFF  # bit rot: same size, same mtime
    frame.write_bytes(bytes(data))
    os.utime(frame, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    fileid = _entries(out)[3]["fileid"]
    capsys.readouterr()
    assert _run(root, out) == 0 and "8 up to date" in _summary(capsys)  # the cheap check trusts stat
    assert _run(root, out, "--verify") == 0
    assert "(0 resized, 1 redone, 7 up to date)" in _summary(capsys)
    assert _resized(root) == fresh
    assert _run(root, out, "--redo", fileid, _entries(out, "dev")[0]["fileid"]) == 0
    out_text = capsys.readouterr().out
    assert "(0 resized, 2 redone, 6 up to date)" in out_text and f"named with --redo: 2 ({fileid}" in out_text
    assert _resized(root) == fresh


def test_redo_unknown_id_and_without_resizing(raw_pair, tmp_path, capsys):
    root, out = _prepared(raw_pair, 3, tmp_path)
    fileid = _entries(out)[0]["fileid"]
    assert _run(root, out, "--redo", fileid.replace("heute", "huete")) == 2
    err = capsys.readouterr().err
    assert "--redo names no video" in err and f"did you mean {fileid!r}" in err
    with pytest.raises(SystemExit):
        main(FMT, ["--dataset-root", str(root), "--redo", fileid])
    assert "add --process-image" in capsys.readouterr().err


def _make_legacy(root: Path) -> None:
    """Turn every manifest into the first version's marker (frame count only), written after the frames."""
    for marker in frames_root(dataset_spec(FMT), root, RES).rglob(MANIFEST):
        record = json.loads(marker.read_text())
        marker.write_text(json.dumps({"frames": record["frames"], "unreadable": [], "size": [48, 40]}))


def test_older_output_is_adopted_when_it_fits_its_sources(raw_pair, tmp_path, capsys):
    root, out = _prepared(raw_pair, 3, tmp_path)
    _make_legacy(root)
    before = _resized(root)
    src, dst = _video_dir(root, out, 1)
    newer = sorted(src.glob("*.png"))[0]
    stamp = (dst / MANIFEST).stat().st_mtime_ns + 10**9
    os.utime(newer, ns=(stamp, stamp))  # this video's source was replaced after it was resized
    capsys.readouterr()
    assert _run(root, out) == 0
    out_text = capsys.readouterr().out
    assert "(0 resized, 1 redone, 7 up to date, 7 of them adopted from an older version)" in out_text
    assert "made by an older version and not verifiable: 1" in out_text and newer.name in out_text
    assert _resized(root) == before
    for marker in frames_root(dataset_spec(FMT), root, RES).rglob(MANIFEST):
        assert json.loads(marker.read_text())["version"] == MANIFEST_VERSION
    assert _run(root, out) == 0 and "(0 resized, 0 redone, 8 up to date)" in _summary(capsys)


def test_frames_of_the_original_tools_are_adopted_unless_sources_are_newer(raw_pair, tmp_path, capsys):
    """Resized folders with no marker at all (the original CorrNet tools wrote none)."""
    root, out = _prepared(raw_pair, 3, tmp_path)
    for marker in frames_root(dataset_spec(FMT), root, RES).rglob(MANIFEST):
        marker.unlink()
    before = _resized(root)
    src, dst = _video_dir(root, out, 0)
    newer = sorted(src.glob("*.png"))[-1]
    stamp = min(p.stat().st_mtime_ns for p in dst.glob("*.png")) + 10**9
    os.utime(newer, ns=(stamp, stamp))
    capsys.readouterr()
    assert _run(root, out) == 0
    assert "(0 resized, 1 redone, 7 up to date, 7 of them adopted from an older version)" in _summary(capsys)
    assert _resized(root) == before


def test_stale_pack_is_reported(raw_pair, tmp_path, capsys):
    root = Path(shutil.copytree(raw_pair[3], tmp_path / "root"))
    assert _run(root, tmp_path / "out", "--pack") == 0
    assert _run(root, tmp_path / "out") == 0
    assert "warning:" not in capsys.readouterr().err  # nothing resized: the pack is current
    fileid = _entries(tmp_path / "out")[0]["fileid"]
    assert _run(root, tmp_path / "out", "--redo", fileid) == 0
    assert f"warning: 1 video(s) were resized now, so the pack {tmp_path / 'out' / f'packed-{RES}'}" in \
        capsys.readouterr().err
