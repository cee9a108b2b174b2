"""Frame packs (raw, png, jpeg): round trips, resumable writing, damage reports, size check."""
from __future__ import annotations

import json
import re
import os
import shutil

import numpy as np
import pytest
import torch

import preprocess.pack as pack_module
from dataset.feeder import BaseFeeder, load_info
from dataset.images import read_rgb
from dataset.packed import PackedFrames, PackError, packed_paths, write_packed
from dataset.registry import dataset_spec
from dataset.synthetic import generate
from preprocess.cli import main as preprocess
from preprocess.pack import split_videos
from tests.train_support import make_feeder

RES = "80x64px"  # width 80, height 64


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict:
    """A tiny camera-style PHOENIX-2014 set with resized frames (no pack yet)."""
    base = tmp_path_factory.mktemp("pack")
    root, out = base / "raw", base / "pre"
    generate("phoenix2014", root, size="tiny", seed=2, style="camera")
    assert preprocess("phoenix2014", ["--dataset-root", str(root), "--output-dir", str(out), "--output-res", RES,
                                      "-p"]) == 0
    info = np.load(out / "train_info.npy", allow_pickle=True).item()
    return {"root": root, "out": out, "videos": split_videos(dataset_spec("phoenix2014"), root, info, RES),
            "gloss_dict": np.load(out / "gloss_dict.npy", allow_pickle=True).item()}


def _feeder(data: dict, mode: str, **kwargs) -> BaseFeeder:
    return make_feeder(str(data["root"]), data["gloss_dict"], "phoenix2014", mode=mode,
                       transform_mode=mode == "train", input_size=24, info_dir=data["out"], frames_res=RES,
                       temporal_min_len=4, frame_interval=2, **kwargs)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


@pytest.mark.parametrize("fmt", ["raw", "png", "jpeg"])
def test_round_trip_lossless_exact_jpeg_within_tolerance(fmt, prepared, tmp_path):
    index = write_packed(tmp_path, "train", prepared["videos"], fmt, quality=90)
    pack = PackedFrames.open(tmp_path, "train")
    assert pack.format == fmt and index["num_frames"] == sum(len(f) for _, f in prepared["videos"])
    for fileid, frames in prepared["videos"]:
        selection = np.array([len(frames) - 1, 0, 0, len(frames) // 2])  # repeats and any order
        got, where = pack.read(fileid, selection)
        clip = got[where]
        expected = np.stack([read_rgb(frames[i]) for i in selection])
        if fmt == "jpeg":
            # Stated tolerance of the JPEG pack (q90, 4:2:0) on these small 80x64 camera-like frames
            # (measured 34-36 dB): every 8x8 block is detail. At 256x256 about 44 dB (bench/feeder.py).
            assert _psnr(clip, expected) > 32 and np.abs(clip.astype(int) - expected).mean() < 4
        else:
            assert np.array_equal(clip, expected)


@pytest.mark.parametrize("mode", ["train", "test"])
def test_lossless_pack_feeds_exactly_the_per_frame_tensors(mode, prepared):
    out = prepared["out"]
    assert preprocess("phoenix2014", ["--dataset-root", str(prepared["root"]), "--output-dir", str(out),
                                      "--output-res", RES, "--pack", "--pack-format", "png"]) == 0
    plain, packed = _feeder(prepared, mode), _feeder(prepared, mode, packed=True)
    assert packed.frames_origin().startswith("the frame pack ") and "no pack" in plain.frames_origin()
    for index in range(len(plain)):
        torch.manual_seed(index)
        a = plain[index]
        torch.manual_seed(index)
        b = packed[index]
        assert torch.equal(a[0], b[0]) and a[2] == b[2]


def test_interrupted_packing_is_reported_then_resumed_to_the_same_bytes(prepared, tmp_path):
    videos = prepared["videos"]
    whole = write_packed(tmp_path / "whole", "train", videos, "jpeg")

    def stop_after_two(done: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_packed(tmp_path / "cut", "train", videos, "jpeg", on_video=stop_after_two)
    with pytest.raises(PackError, match=r"half-written \(2 videos"):
        PackedFrames.open(tmp_path / "cut", "train")
    # The rerun continues after video 2 (it never re-encodes the first two) and gives the same pack.
    resumed = write_packed(tmp_path / "cut", "train", videos, "jpeg", on_video=lambda done: None if done > 2
                           else pytest.fail("video redone"))
    assert resumed == whole
    for name in ("train.jpeg", "train.frames.npy"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert not list((tmp_path / "cut").glob("*partial*")) and not list((tmp_path / "cut").glob("*progress*"))


def test_progress_of_other_settings_is_not_resumed(prepared, tmp_path):
    videos = prepared["videos"]

    def stop(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_packed(tmp_path, "train", videos, "jpeg", quality=80, on_video=stop)
    write_packed(tmp_path, "train", videos, "jpeg", quality=90)
    write_packed(tmp_path / "ref", "train", videos, "jpeg", quality=90)
    assert (tmp_path / "train.jpeg").read_bytes() == (tmp_path / "ref" / "train.jpeg").read_bytes()


def test_corrupt_entry_is_reported_with_video_and_frame(prepared, tmp_path):
    videos = prepared["videos"]
    write_packed(tmp_path, "train", videos, "jpeg")
    fileid = videos[1][0]
    pack = PackedFrames.open(tmp_path, "train")
    start = pack.index["videos"][fileid][0]
    offset, length, _ = np.load(packed_paths(tmp_path, "train").table)[start + 3]
    data = bytearray((tmp_path / "train.jpeg").read_bytes())
    data[offset + length // 2] ^= 0xFF  # one flipped byte in the middle of the entropy-coded data
    (tmp_path / "train.jpeg").write_bytes(bytes(data))
    damaged = PackedFrames.open(tmp_path, "train")
    damaged.read(fileid, np.array([0, 1, 2]))  # the other frames still read
    with pytest.raises(PackError, match=rf"frame 3 of video '{fileid}' .*corrupt.*--repack"):
        damaged.read(fileid, np.array([2, 3]))


def test_mismatched_pack_files_are_reported(prepared, tmp_path):
    write_packed(tmp_path, "dev", prepared["videos"][:2], "png")
    paths = packed_paths(tmp_path, "dev")
    data = tmp_path / "dev.png"
    data.write_bytes(data.read_bytes()[:-1])
    with pytest.raises(PackError, match="do not belong together"):
        PackedFrames.open(tmp_path, "dev")
    data.unlink()
    with pytest.raises(PackError, match="dev.png is missing"):
        PackedFrames.open(tmp_path, "dev")
    index = json.loads(paths.index.read_text())
    paths.index.write_text(json.dumps({**index, "version": 99}))
    with pytest.raises(PackError, match="version 99"):
        PackedFrames.open(tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="--pack"):
        PackedFrames.open(tmp_path / "none", "dev")


def test_first_layout_raw_packs_still_open(prepared, tmp_path):
    fileid, frames = prepared["videos"][0]
    images = np.stack([read_rgb(f) for f in frames])
    (tmp_path / "train.u8").write_bytes(images.tobytes())
    (tmp_path / "train.json").write_text(json.dumps({"version": 1, "format": "raw-rgb-uint8",
                                                     "frame_shape": list(images.shape[1:]),
                                                     "num_frames": len(images), "videos": {fileid: [0, len(images)]}}))
    assert np.array_equal(PackedFrames.open(tmp_path, "train").video(fileid), images)


def _pack_cli(data: dict, out, *extra: str) -> int:
    shutil.copytree(data["out"], out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("packed-*"))
    return preprocess("phoenix2014", ["--dataset-root", str(data["root"]), "--output-dir", str(out),
                                      "--output-res", RES, "--pack", *extra])


def test_size_check_refuses_a_pack_that_does_not_fit(prepared, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pack_module, "free_bytes", lambda path: 0)
    assert _pack_cli(prepared, tmp_path / "a", "--pack-format", "raw") == 2
    err = capsys.readouterr().err
    assert "raw pack needs about" in err and "no pack format fits" in err
    assert not (tmp_path / "a" / f"packed-{RES}" / "train.json").exists()
    # Room for the JPEG pack but not the raw one: the message names the formats that fit.
    frames = sum(int(e["num_frames"]) for split in ("train", "dev", "test")
                 for k, e in np.load(prepared["out"] / f"{split}_info.npy", allow_pickle=True).item().items()
                 if k != "prefix")
    monkeypatch.setattr(pack_module, "free_bytes", lambda path: frames * 64 * 80 * 3 // 2)
    assert _pack_cli(prepared, tmp_path / "b", "--pack-format", "raw") == 2
    captured = capsys.readouterr()
    assert "--pack-format jpeg" in captured.err and "raw" in captured.out and "jpeg q90" in captured.out
    assert _pack_cli(prepared, tmp_path / "b", "--pack-format", "jpeg") == 0


def test_current_pack_is_kept_and_changed_frames_are_repacked(prepared, tmp_path, capsys):
    assert _pack_cli(prepared, tmp_path) == 0
    assert _pack_cli(prepared, tmp_path) == 0
    assert capsys.readouterr().out.count("up to date (jpeg)") == 3
    _, frames = split_videos(dataset_spec("phoenix2014"), prepared["root"],
                             np.load(tmp_path / "dev_info.npy", allow_pickle=True).item(), RES)[0]
    stat = os.stat(frames[0])
    os.utime(frames[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # a redone frame: dev is repacked
    try:
        assert _pack_cli(prepared, tmp_path) == 0
        out = capsys.readouterr().out
        assert out.count("up to date (jpeg)") == 2 and "packed dev" in out
    finally:
        os.utime(frames[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _pack_cli(prepared, tmp_path, "--repack") == 0
    assert "up to date" not in capsys.readouterr().out


def test_training_refuses_a_pack_older_than_the_resized_frames(prepared, tmp_path):
    """Frames resized again after packing (sources changed): the feeder names the stale videos."""
    import cv2

    from dataset.layout import raw_frames_root

    root, out = tmp_path / "raw", tmp_path / "pre"
    shutil.copytree(prepared["root"], root)
    cli = ["--dataset-root", str(root), "--output-dir", str(out), "--output-res", RES, "-p"]
    assert preprocess("phoenix2014", [*cli, "--pack"]) == 0
    data = {**prepared, "root": root, "out": out}
    _feeder(data, "dev", packed=True)  # current: opens
    entry = load_info(out / "dev_info.npy")[0]
    raw = raw_frames_root(dataset_spec("phoenix2014"), root)
    source = sorted((raw / os.path.dirname(entry["folder"])).glob("*.png"))[0]
    cv2.imwrite(str(source), 255 - cv2.imread(str(source)))  # a corrected source frame
    assert preprocess("phoenix2014", cli) == 0  # resized again, not re-packed (it warns)
    with pytest.raises(PackError, match=f"older frames of 1 videos.*{entry['fileid']}.*--pack"):
        _feeder(data, "dev", packed=True)
    _feeder(data, "train", packed=True)  # other splits are unaffected
    assert preprocess("phoenix2014", [*cli, "--pack"]) == 0
    _feeder(data, "dev", packed=True)
    # A pack copied without the resized frames is all there is: nothing to compare with.
    shutil.rmtree(root)
    root.mkdir()
    _feeder(data, "dev", packed=True)


def _crafted(prepared, tmp_path, fmt: str = "jpeg") -> tuple[dict, object]:
    """A two-video pack of `fmt` and its paths, for crafting its index or table."""
    write_packed(tmp_path, "dev", prepared["videos"][:2], fmt)
    paths = packed_paths(tmp_path, "dev")
    return json.loads(paths.index.read_text()), paths


@pytest.mark.parametrize("change, message", [
    (lambda i: {**i, "videos": {**i["videos"], "v": [-5, 3]}}, r"video 'v' has the entry \[-5, 3\].*non-negative"),
    (lambda i: {**i, "videos": {**i["videos"], "v": [1, i["num_frames"]]}}, r"inside the \d+ frames"),
    (lambda i: {**i, "videos": {**i["videos"], "v": [0, "3"]}}, r"video 'v' has the entry"),
    (lambda i: {**i, "frame_shape": [400000, 400000, 3]}, r"frame_shape \[400000, 400000, 3\] is not"),
    (lambda i: {**i, "frame_shape": [60000, 60000, 3]}, r"frame_shape \[60000, 60000, 3\] but the first frame"),
    (lambda i: {**i, "frame_shape": [64, 80]}, r"frame_shape \[64, 80\] is not"),
    (lambda i: {**i, "num_frames": -1}, r"num_frames -1"),
    (lambda i: {**i, "videos": [1, 2]}, r"'videos' is not an object"),
    (lambda i: {**i, "frames_from": {"v": [1]}}, r"'frames_from', 'frames_dir' or 'dataset' is malformed"),
])
def test_crafted_pack_index_is_refused_on_open(prepared, tmp_path, change, message):
    index, paths = _crafted(prepared, tmp_path)
    paths.index.write_text(json.dumps(change(index)))
    with pytest.raises(PackError, match=rf"dev\.json: .*{message}"):
        PackedFrames.open(tmp_path, "dev")


def test_crafted_raw_frame_shape_is_refused_before_reading(prepared, tmp_path):
    index, paths = _crafted(prepared, tmp_path, "raw")
    paths.index.write_text(json.dumps({**index, "frame_shape": [65535, 65535, 3]}))
    with pytest.raises(PackError, match=r"do not belong together|do not make"):
        PackedFrames.open(tmp_path, "dev")


def test_unreadable_pack_index_and_table_name_the_file(prepared, tmp_path):
    index, paths = _crafted(prepared, tmp_path)
    paths.index.write_text("{\"version\": 2,")
    with pytest.raises(PackError, match=r"dev\.json: not a readable pack index"):
        PackedFrames.open(tmp_path, "dev")
    paths.index.write_text("[2]")
    with pytest.raises(PackError, match=r"dev\.json: not a pack index \(a JSON list"):
        PackedFrames.open(tmp_path, "dev")
    paths.index.write_text(json.dumps(index))
    table = np.load(paths.table)
    np.save(paths.table, np.array([[int(v) for v in row] for row in table], dtype=object), allow_pickle=True)
    with pytest.raises(PackError, match=r"dev\.frames\.npy: not a frame table of plain integers"):
        PackedFrames.open(tmp_path, "dev")
    shifted = table.copy()
    shifted[0, 0] = -1
    np.save(paths.table, shifted)
    with pytest.raises(PackError, match=r"dev\.frames\.npy: frame offsets or lengths outside"):
        PackedFrames.open(tmp_path, "dev")
    np.save(paths.table, table)
    PackedFrames.open(tmp_path, "dev")  # the pack itself was fine


def test_pack_of_another_dataset_is_refused(prepared, tmp_path):
    write_packed(tmp_path, "dev", prepared["videos"][:2], "jpeg", dataset="phoenix2014")
    PackedFrames.open(tmp_path, "dev", dataset="phoenix2014")
    with pytest.raises(PackError, match=r"a pack of phoenix2014 frames, but the run is for phoenix2014-T"):
        PackedFrames.open(tmp_path, "dev", dataset="phoenix2014-T")


def test_pack_records_its_dataset_and_a_pack_without_it_is_rewritten(prepared, tmp_path, capsys):
    assert _pack_cli(prepared, tmp_path) == 0
    packed = tmp_path / f"packed-{RES}"
    assert json.loads((packed / "dev.json").read_text())["dataset"] == "phoenix2014"
    index = json.loads((packed / "dev.json").read_text())
    del index["dataset"]
    (packed / "dev.json").write_text(json.dumps(index))
    capsys.readouterr()
    assert _pack_cli(prepared, tmp_path) == 0
    assert "packed dev" in capsys.readouterr().out  # not 'up to date': it did not say whose frames it held


def test_pack_of_other_frames_is_not_called_resized_again(prepared, tmp_path):
    """The pack of one copy of the dataset over the frames of another: 'built from other frames'."""
    import cv2

    from dataset.layout import raw_frames_root

    assert _pack_cli(prepared, tmp_path / "a") == 0
    root, out = tmp_path / "raw", tmp_path / "pre"
    shutil.copytree(prepared["root"], root)  # times kept: the resized frames stay up to date
    entry = load_info(prepared["out"] / "dev_info.npy")[0]
    raw = raw_frames_root(dataset_spec("phoenix2014"), root)
    source = sorted((raw / os.path.dirname(entry["folder"])).glob("*.png"))[0]
    cv2.imwrite(str(source), 255 - cv2.imread(str(source)))  # another video under the same id
    assert preprocess("phoenix2014", ["--dataset-root", str(root), "--output-dir", str(out), "--output-res", RES,
                                      "-p"]) == 0
    data = {**prepared, "root": root, "out": out}
    with pytest.raises(PackError, match=rf"built from other frames than those in .* for 1 videos .*{entry['fileid']}"
                                        rf".*packed from {prepared['root']}") as caught:
        _feeder(data, "dev", packed=True, packed_dir=tmp_path / "a" / f"packed-{RES}")
    assert "resized again" not in str(caught.value)


def test_full_disk_while_packing_is_one_line(prepared, tmp_path, monkeypatch, capsys):
    import errno

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert _pack_cli(prepared, tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: no space left on the disk of ")
    assert f"packed-{RES}" in err and "the train split" in err and re.search(r"\(\d+ bytes\) more are needed", err)
    monkeypatch.undo()
    assert _pack_cli(prepared, tmp_path) == 0
