"""The table dataset: real encoded videos -> table -> JPEG pack -> one epoch -> scoring, and every bad input
ending in one line naming the table's row."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import main as main_module
from dataset.feeder import BaseFeeder
from dataset.packed import PackedFrames, PackError
from dataset.registry import dataset_spec
from dataset.synthetic import generate
from dataset.video_files import available_codecs, write_video
from preprocess import table_cli
from preprocess.video_pack import videos_partial
from tests.train_support import REPO_ROOT, make_feeder, tiny_config, write_config
from utils.npy import load_npy_object

RES = "64x64px"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """The tiny synthetic table dataset, its videos in every codec this PyAV build encodes."""
    root = tmp_path_factory.mktemp("table") / "corpus"
    generate("table", root, size="tiny", seed=0, frame_size=(64, 48), video_codec="mixed")
    return root


def copy_corpus(videos: Path, tmp_path: Path) -> Path:
    """A private copy of the corpus (tests change its videos and table)."""
    return Path(shutil.copytree(videos, tmp_path / "corpus"))


def prepare(table: Path, out: Path, *extra: str) -> int:
    """`python -m preprocess --dataset table ...` in this process."""
    return table_cli.main(dataset_spec("table"), ["--table", str(table), "--output-dir", str(out), "--output-res",
                                                  RES, "--workers", "1", *extra])


def pack_bytes(out: Path) -> dict[str, bytes]:
    """Every file of the pack folder."""
    return {p.name: p.read_bytes() for p in sorted((out / f"packed-{RES}").iterdir())}


def info(out: Path, split: str) -> list[dict]:
    data = load_npy_object(out / f"{split}_info.npy")
    return [data[k] for k in sorted(k for k in data if isinstance(k, int))]


def error_lines(capsys) -> list[str]:
    """The `error:` lines on stderr (warnings and progress bars aside)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def rows(table: Path) -> list[str]:
    return table.read_text(encoding="utf-8").splitlines()


def write_rows(table: Path, lines: list[str]) -> Path:
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table


def test_generator_writes_real_videos_of_every_available_codec(videos):
    suffixes = {p.suffix for p in (videos / "videos").iterdir()}
    expected = {".mp4"} | ({".avi"} if "mjpeg" in available_codecs() else set()) | \
        ({".webm"} if "vp9" in available_codecs() else set())
    assert suffixes == expected
    assert rows(videos / "table.csv")[0] == "video,glosses,split,signer"


def test_table_to_pack_to_one_epoch_to_scores(videos, tmp_path, capsys):
    out = tmp_path / "pre"
    assert prepare(videos / "table.csv", out) == 0
    err = capsys.readouterr().err
    lines = rows(videos / "table.csv")[1:]
    train_glosses = {g for line in lines if line.split(",")[2] == "train" for g in line.split(",")[1].split()}
    dev_unseen = sorted({g for line in lines if line.split(",")[2] == "dev"
                         for g in line.split(",")[1].split()} - train_glosses)
    assert f"{len(dev_unseen)} gloss(es) of dev never occur in train" in err and all(g in err for g in dev_unseen)
    gloss_dict = load_npy_object(out / "gloss_dict.npy")
    assert sorted(gloss_dict) == sorted(train_glosses)  # the vocabulary is train's
    assert [v[0] for v in gloss_dict.values()] == list(range(1, len(gloss_dict) + 1))
    pack = PackedFrames.open(out / f"packed-{RES}", "train", dataset="table")
    for entry in info(out, "train"):
        assert entry["num_frames"] == pack.num_frames(entry["fileid"]) == entry["decoded_frames"] > 0
        assert entry["source_fps"] == 25.0
        frames, _ = pack.read(entry["fileid"], np.arange(entry["num_frames"]))
        assert frames.shape[1:] == (64, 64, 3)
    stm = (out / "table-groundtruth-dev.stm").read_text(encoding="utf-8").splitlines()
    assert [line.split()[0] for line in stm] == [e["fileid"] for e in info(out, "dev")]
    assert stm[0].endswith(lines[[line.split(",")[2] for line in lines].index("dev")].split(",")[1])

    cfg = tiny_config({"raw": videos, "pre": out}, tmp_path / "run", num_epoch=1, dataset="table",
                      feeder_args={"packed": True})
    config = write_config(cfg, tmp_path / "run.yaml")
    results = main_module.main(["--config", str(config), "--set", f"dataset_info.table={videos / 'table.csv'}",
                                "--set", f"dataset_info.dict_path={out / 'gloss_dict.npy'}"])
    assert results is not None
    assert (tmp_path / "run" / "test_best" / "output-hypothesis-test.ctm").is_file()
    assert (tmp_path / "run" / "best_model.pt").is_file()


def test_a_rerun_is_up_to_date_and_a_changed_video_alone_is_decoded_again(videos, tmp_path, capsys):
    corpus = copy_corpus(videos, tmp_path)
    out, fresh = tmp_path / "pre", tmp_path / "fresh"
    assert prepare(corpus / "table.csv", out) == 0
    before = pack_bytes(out)
    assert prepare(corpus / "table.csv", out) == 0
    assert "pack train: 4 videos (up to date)" in capsys.readouterr().out and pack_bytes(out) == before
    changed = corpus / "videos" / "train_0000.mp4"
    write_video(changed, np.full((5, 48, 64, 3), 200, np.uint8), codec="mpeg4")
    assert prepare(corpus / "table.csv", out) == 0
    assert "pack train: 4 videos (1 decoded, 3 unchanged)" in capsys.readouterr().out
    assert info(out, "train")[0]["num_frames"] == 5
    assert prepare(corpus / "table.csv", fresh) == 0
    assert pack_bytes(out) == pack_bytes(fresh)


def test_training_refuses_a_pack_whose_videos_changed_since_decoding(videos, tmp_path):
    corpus = copy_corpus(videos, tmp_path)
    out = tmp_path / "pre"
    assert prepare(corpus / "table.csv", out) == 0
    gloss_dict = load_npy_object(out / "gloss_dict.npy")

    def feeder() -> BaseFeeder:
        return make_feeder(str(corpus), gloss_dict, "table", mode="train", info_dir=out, frames_res=RES,
                           packed=True, transform_mode=False)

    assert len(feeder()) == 4
    changed = corpus / "videos" / "train_0001.avi"
    os.utime(changed, ns=(1, 1))  # the time alone moved: same content, still current
    assert len(feeder()) == 4
    write_video(changed, np.full((5, 48, 64, 3), 200, np.uint8), codec="mjpeg")
    with pytest.raises(PackError, match=r"decoded from older versions of 1 videos \(first: 'videos/train_0001'.*"
                                        r"re-run the preprocessing"):
        feeder()
    assert prepare(corpus / "table.csv", out) == 0
    assert len(feeder()) == 4


KILL_AFTER = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import preprocess.video_pack as video_pack
note, seen = video_pack._note, []
def killing_note(result, record):
    note(result, record)
    seen.append(record)
    if len(seen) == {after}:
        os.kill(os.getpid(), signal.SIGKILL)  # right after the video's record was synced
video_pack._note = killing_note
from dataset.registry import dataset_spec
from preprocess.table_cli import main
sys.exit(main(dataset_spec("table"), {argv!r}))
"""


@pytest.mark.parametrize("after, torn", [(3, False), (2, True)])
def test_kill_9_then_rerun_continues_and_writes_the_same_pack(videos, tmp_path, after, torn):
    table = videos / "table.csv"
    argv = ["--table", str(table), "--output-dir", str(tmp_path / "killed"), "--output-res", RES, "--workers", "1"]
    script = KILL_AFTER.format(repo=str(REPO_ROOT), after=after, argv=argv)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    packed = tmp_path / "killed" / f"packed-{RES}"
    log = videos_partial(packed, "train")
    assert len(log.read_text().splitlines()) == 1 + after and not (packed / "train.json").exists()
    assert not (tmp_path / "killed" / "train_info.npy").exists()
    if torn:  # a kill in the middle of the next record's line
        with log.open("a") as handle:
            handle.write('{"fileid": "videos/tra')
    assert prepare(table, tmp_path / "killed") == 0
    assert prepare(table, tmp_path / "whole") == 0
    assert pack_bytes(tmp_path / "killed") == pack_bytes(tmp_path / "whole")
    assert not log.exists()


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 400):
        data[i] = (data[i] * 7 + 3) % 256
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero_frames(path: Path) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 64, 48
        container.start_encoding()


def _image(path: Path) -> None:
    path.write_bytes(cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes())


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage, why", [(_corrupt, "not a readable video|damaged|truncated"),
                                         (_truncate, "not a readable video|damaged|truncated"),
                                         (_zero_frames, "no video stream|no video frames"),
                                         (_image, "an image"), (_empty, "not a readable video")])
def test_a_bad_video_is_one_line_naming_its_row_or_left_out_on_request(videos, tmp_path, capsys, damage, why):
    corpus = copy_corpus(videos, tmp_path)
    lines = rows(corpus / "table.csv")
    line_no = next(n for n, line in enumerate(lines, start=1)  # an H.264 video after another one
                   if line.split(",")[2] == "train" and n > 2 and line.startswith("videos/train_0003.mp4"))
    bad = corpus / lines[line_no - 1].split(",")[0]
    damage(bad)
    out = tmp_path / "pre"
    assert prepare(corpus / "table.csv", out) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and err[0].startswith(f"error: {corpus / 'table.csv'}:{line_no}: video {bad}: ")
    assert re.search(why, err[0]) and "--skip-bad-videos" in err[0]
    assert not (out / "train_info.npy").exists() and not (out / "gloss_dict.npy").exists()
    assert prepare(corpus / "table.csv", out, "--skip-bad-videos") == 0
    err = capsys.readouterr().err
    assert "left out 1 video(s) that do not decode" in err and f"table.csv:{line_no}: video {bad}" in err
    fileids = [e["fileid"] for e in info(out, "train")]
    assert len(fileids) == 3 and Path(bad).stem not in " ".join(fileids)
    assert f"{Path(bad).stem} " not in (out / "table-groundtruth-train.stm").read_text()


@pytest.mark.parametrize("edit, message", [
    (lambda lines: [lines[0].replace("glosses", "gloss")] + lines[1:], r":1: the header lacks the column\(s\) glosses"),
    (lambda lines: ["video,glosses,split,signer,id"] + [f"{line},same" for line in lines[1:]],
     r":3: id 'same' is also the id of line 2"),
    (lambda lines: [lines[0], lines[1].replace(",train,", ",training,")] + lines[2:],
     r":2: unknown split 'training' \(did you mean 'train'\?\)"),
    (lambda lines: [lines[0], ",".join([lines[1].split(",")[0], "", *lines[1].split(",")[2:]])] + lines[2:],
     r":2: the glosses cell is empty"),
    (lambda lines: [lines[0], lines[1].replace("videos/", "clips/")] + lines[2:], r":2: video 'clips/.*' not found"),
])
def test_a_bad_table_is_one_line_naming_file_and_row(videos, tmp_path, capsys, edit, message):
    table = write_rows(tmp_path / "table.csv", edit(rows(videos / "table.csv")))
    shutil.copytree(videos / "videos", tmp_path / "videos")
    assert prepare(table, tmp_path / "pre") == 2
    err = error_lines(capsys)
    assert len(err) == 1 and re.match(f"error: {re.escape(str(table))}{message}", err[0]), err
    assert not (tmp_path / "pre").exists()


def test_rotated_odd_sized_variable_rate_videos_at_non_ascii_spaced_paths(tmp_path, capsys):
    """Portrait video stored with a rotation, frames of odd sizes, a variable frame rate resampled to
    --fps, a frame folder, paths with spaces and non-ASCII characters; a TSV table."""
    folder = tmp_path / "vidéos du signeur" / "手语"
    folder.mkdir(parents=True)
    marked = np.zeros((6, 32, 48, 3), np.uint8)
    marked[:, :, :8] = 255  # a white band on the left of the stored (landscape) frame
    write_video(folder / "rotated clip.mp4", marked, codec="h264-lossless", rotation=90)
    write_video(folder / "odd.avi", np.full((4, 27, 33, 3), 90, np.uint8), codec="mjpeg")
    times = [0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.22, 0.24, 0.26, 0.28]  # 25 fps, then 50 fps
    write_video(folder / "vfr.mkv", np.full((10, 32, 32, 3), 30, np.uint8), codec="mpeg4", times=times)
    frames = tmp_path / "frames of one video"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), np.full((20, 30, 3), 60, np.uint8))
    table = write_rows(tmp_path / "signs.tsv", [
        "video\tglosses\tsplit\tid", "vidéos du signeur/手语/rotated clip.mp4\tA B\ttrain\trotated",
        f"{folder / 'odd.avi'}\tB\ttrain\t", "vidéos du signeur/手语/vfr.mkv\tA\tdev\tvfr",
        "frames of one video\tB A\ttest\tframes"])
    out = tmp_path / "pre"
    assert prepare(table, out, "--fps", "25") == 0, capsys.readouterr().err
    train, dev, test = info(out, "train"), info(out, "dev"), info(out, "test")
    assert [e["fileid"] for e in train] == ["rotated", f"{str(folder / 'odd').lstrip('/')}".replace(" ", "_")]
    pack = PackedFrames.open(out / f"packed-{RES}", "train")
    upright, _ = pack.read("rotated", np.arange(train[0]["num_frames"]))
    # 90 degrees counter-clockwise: the stored frame's left band becomes the displayed frame's bottom
    assert upright[0, -6:].mean() > 200 and upright[0, :20].mean() < 40
    assert train[0]["num_frames"] == 6 and train[1]["num_frames"] == 4
    # 0.28 s of frames (the last shown 1/25 s) at 25 fps: 8 frames, from 10 decoded
    assert dev[0]["decoded_frames"] == 10 and dev[0]["num_frames"] == 8
    assert test[0]["num_frames"] == 3 and test[0]["source_fps"] is None
