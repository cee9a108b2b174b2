"""The table dataset's helpers: the signer-independent split, and CSL from its .avi videos."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from dataset.video_files import write_video
from preprocess import csl_videos
from preprocess.__main__ import main as preprocess_main
from preprocess.split import assign_signers
from preprocess.split import main as split_main
from preprocess.table import read_video_table
from utils.npy import load_npy_object


def signer_table(path: Path, signers: dict[str, int], split: bool = False) -> Path:
    """A table of `signers[s]` rows for each signer s (videos need not exist to be split)."""
    lines = ["video,glosses,signer" + (",split" if split else "")]
    lines += [f"v/{s}_{i}.mp4,A B,{s}" + (",train" if split else "") for s, n in signers.items() for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


COUNTS = {"anna": 30, "ben": 25, "cem": 20, "dora": 10, "emil": 8, "fay": 5, "gus": 2}


def test_split_by_signer_keeps_every_signer_in_one_split_near_the_proportions(tmp_path, capsys):
    table = signer_table(tmp_path / "t.csv", COUNTS)
    assert split_main(["--table", str(table), "--proportions", "0.7", "0.15", "0.15", "--seed", "3"]) == 0
    report = capsys.readouterr().out
    lines = table.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "video,glosses,signer,split"
    split_of: dict[str, set[str]] = {}
    for line in lines[1:]:
        _video, _glosses, signer, split = line.split(",")
        split_of.setdefault(signer, set()).add(split)
    assert all(len(splits) == 1 for splits in split_of.values()) and len(split_of) == len(COUNTS)
    per_split = {s: sum(COUNTS[g] for g, (x,) in split_of.items() if x == s) for s in ("train", "dev", "test")}
    assert all(per_split.values()) and per_split["train"] >= 60  # 70 % of 100 videos, within a signer
    for split, videos in per_split.items():
        assert re.search(rf"{split}: {videos} videos", report)
    assert split_of == {g: {s} for g, s in assign_signers(COUNTS, (0.7, 0.15, 0.15), 3).items()}  # seeded
    assert len({tuple(sorted(assign_signers(COUNTS, (0.7, 0.15, 0.15), seed).items())) for seed in range(8)}) > 1


@pytest.mark.parametrize("counts, split, message", [
    ({"anna": 3, "ben": 2}, False, r"2 signer\(s\) cannot make signer-independent"),
    (COUNTS, True, r"the split column is already filled; pass --replace"),
])
def test_split_refusals_are_one_line(tmp_path, capsys, counts, split, message):
    table = signer_table(tmp_path / "t.csv", counts, split)
    before = table.read_bytes()
    assert split_main(["--table", str(table)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]) and table.read_bytes() == before


def test_split_needs_every_signer(tmp_path, capsys):
    table = signer_table(tmp_path / "t.csv", COUNTS)
    table.write_text(table.read_text() + "v/x.mp4,A,\n", encoding="utf-8")
    assert split_main(["--table", str(table)]) == 2
    assert f"{table}:{sum(COUNTS.values()) + 2}: the signer cell is empty" in capsys.readouterr().err


def test_a_split_table_is_read_by_the_table_dataset(tmp_path):
    table = signer_table(tmp_path / "t.csv", COUNTS)
    (tmp_path / "v").mkdir()
    for line in table.read_text().splitlines()[1:]:
        (tmp_path / line.split(",")[0]).write_bytes(b"")
    assert split_main(["--table", str(table), "--seed", "1"]) == 0
    videos = read_video_table(table)
    assert {v.split for v in videos} == {"train", "dev", "test"} and len(videos) == sum(COUNTS.values())


def test_csl_order_maps_video_n_to_its_sentence_folder_and_signer(tmp_path):
    for sentence in range(2):
        folder = tmp_path / f"{sentence:06d}"
        folder.mkdir()
        for number in range(10):
            (folder / f"P{number // 5 + 1:02d}_s1_{sentence:02d}_{number % 5}_color.avi").write_bytes(b"")
    mapping = csl_videos.default_mapping(tmp_path, per_sentence=10)
    assert mapping["video13"].name == "P01_s1_01_3_color.avi"
    assert [csl_videos.signer_of(f"video{n}") for n in (13, 213, 249, 250)] == ["P03", "P43", "P50", "P01"]
    with pytest.raises(csl_videos.PreprocessError, match="holds 10 videos, not a sentence's 250.*--mapping"):
        csl_videos.default_mapping(tmp_path)


def test_csl_from_its_videos_with_the_original_split_files(shared_dir, tmp_path, capsys):
    reference = shared_dir / "reference" / "CSL"
    if not (reference / "train.txt").is_file():
        pytest.skip(f"the original CSL split files are not in {reference}")
    root = tmp_path / "CSL"
    root.mkdir()
    for name in ("train.txt", "dev.txt"):
        shutil.copyfile(reference / name, root / name)
    videos = tmp_path / "CSL videos" / "000000"
    videos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["video,path"]
    for number in (0, 1, 2, 200, 201):  # signers 1 (train) and 41 (dev) of sentence 0
        write_video(videos / f"P_{number}.avi", rng.integers(0, 255, (4 + number % 3, 48, 64, 3), np.uint8),
                    codec="mjpeg")
        rows.append(f"video{number},000000/P_{number}.avi")
    mapping = tmp_path / "map.csv"
    mapping.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "pre"
    assert preprocess_main(["--dataset", "CSL", "--videos", str(videos.parent), "--mapping", str(mapping),
                            "--dataset-root", str(root), "--output-dir", str(out), "--output-res", "32x32px",
                            "--workers", "1"]) == 0
    assert "24995 split-file lines name a video not found" in capsys.readouterr().err
    train = load_npy_object(out / "train_info.npy")
    assert [train[i]["fileid"] for i in range(3)] == ["video0", "video1", "video2"]
    assert [train[i]["num_frames"] for i in range(3)] == [4, 5, 6]
    listed = dict(line.rsplit("/", 1)[1].split("|") for line in (reference / "dev.txt").read_text(
        encoding="utf-8").splitlines())
    glosses = listed["video200"].split()
    stm = (out / "CSL-groundtruth-dev.stm").read_text(encoding="utf-8").splitlines()
    assert stm[0].split()[0] == "video200" and stm[0].split()[5:] == glosses
    train_glosses = {g for i in range(3) for g in train[i]["label"].split()}
    assert sorted(load_npy_object(out / "gloss_dict.npy")) == sorted(train_glosses | set(glosses))  # all splits
