"""The synthetic signing dataset: determinism, real on-disk formats, held-out signers, distinct glosses."""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset.registry import dataset_spec
from dataset.synthetic import (
    CATEGORIES,
    SIZES,
    gloss_pose,
    plan_videos,
    render_camera_video,
    render_video,
    sample_sentence,
    vocabulary,
)


def _digest(root: Path) -> str:
    """Hash of every file's relative path and bytes under `root`."""
    sha = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(root)).encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


def _cli(fmt: str, out: Path, seed: int, repo_root: Path) -> None:
    subprocess.run([sys.executable, "-m", "dataset.synthetic", "--format", fmt, "--out", str(out),
                    "--size", "tiny", "--seed", str(seed), "--workers", "1"], cwd=repo_root, check=True,
                   capture_output=True)


def test_same_seed_same_bytes_other_seed_differs(tmp_path, repo_root):
    _cli("phoenix2014", tmp_path / "a", 1, repo_root)
    from dataset.synthetic import generate

    generate("phoenix2014", tmp_path / "b", "tiny", seed=1, workers=2)  # parallel writing: same bytes
    generate("phoenix2014", tmp_path / "c", "tiny", seed=2)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


@pytest.mark.parametrize("fmt, pattern, shape", [
    ("phoenix2014", r"features/fullFrame-210x260px/(train|dev|test)/[^/]+_default-\d+/1/"
                    r"[^/]+\.avi_pid0_fn\d{6}-0\.png", (260, 210, 3)),
    ("phoenix2014-T", r"features/fullFrame-210x260px/(train|dev|test)/[^/]+-\d+/images\d{4}\.png", (260, 210, 3)),
    ("CSL-Daily", r"sentence/frames_512x512/S\d{6}_P\d{4}_T00/\d{6}\.jpg", (512, 512, 3)),
    ("CSL", r"video\d+/\d{6}\.jpg", (720, 1280, 3)),
])
def test_real_layout_names_and_resolution(fmt, pattern, shape, tmp_path):
    from dataset.synthetic import generate

    counts = generate(fmt, tmp_path, "tiny", seed=0)
    frames = sorted(p for p in tmp_path.rglob("*") if p.suffix in (".png", ".jpg"))
    videos = sum(n for split, n in SIZES["tiny"].videos.items() if split in dataset_spec(fmt).splits)
    assert len(frames) == counts["frames"] and counts["videos"] == videos
    for frame in frames:
        assert re.fullmatch(pattern, str(frame.relative_to(tmp_path))), frame
    assert cv2.imread(str(frames[0])).shape == shape
    first_index = {"phoenix2014": "fn000000-0.png", "phoenix2014-T": "images0001.png", "CSL-Daily": "000000.jpg",
                   "CSL": "000000.jpg"}[fmt]
    assert any(f.name.endswith(first_index) for f in frames)


def test_annotation_headers(tmp_path):
    from dataset.synthetic import generate

    generate("phoenix2014-T", tmp_path / "t", "tiny", seed=0)
    generate("CSL-Daily", tmp_path / "c", "tiny", seed=0)
    csv = (tmp_path / "t" / "annotations/manual/PHOENIX-2014-T.train.corpus.csv").read_text("utf-8").splitlines()
    assert csv[0] == "name|video|start|end|speaker|orth|translation"
    name, video, start, end, speaker, orth, text = csv[1].split("|")
    assert video == f"{name}/1/*.png" and (start, end) == ("-1", "-1") and re.fullmatch(r"Signer\d\d", speaker)
    assert text == orth.lower()
    labels = tmp_path / "c" / "sentence_label"
    assert (labels / "video_map.txt").read_text("utf-8").startswith("index|name|length|gloss|char|word|postag\n")
    assert (labels / "split_1.txt").read_text("utf-8").startswith("name|split\n")


def test_dev_and_test_signers_are_held_out():
    videos = plan_videos(dataset_spec("phoenix2014"), "small", 0)
    signers = {split: {v.signer for v in videos if v.split == split} for split in ("train", "dev", "test")}
    assert signers["train"].isdisjoint(signers["dev"] | signers["test"])
    assert len({s.shirt for s in signers["train"]}) == len(signers["train"])  # appearances differ


def test_sentences_follow_the_length_range_and_vocabulary():
    rng = np.random.default_rng(0)
    for fmt in ("phoenix2014", "CSL-Daily"):
        vocab = set(vocabulary(dataset_spec(fmt)))
        connect = set(CATEGORIES["connect"][1 if fmt == "CSL-Daily" else 0])
        lengths = []
        for _ in range(300):
            sentence = sample_sentence(rng, (2, 10), dataset_spec(fmt))
            assert set(sentence) <= vocab and sentence[-1] not in connect
            lengths.append(len(sentence))
        assert min(lengths) == 2 and max(lengths) == 10
    assert 24 <= len(vocabulary(dataset_spec("phoenix2014"))) == len(set(vocabulary(dataset_spec("CSL-Daily")))) \
        <= 48


def test_every_gloss_has_a_distinct_pattern():
    vocab = vocabulary(dataset_spec("phoenix2014"))
    signatures = {(gloss_pose(g, 0.0)[0], gloss_pose(g, 0.0)[1], gloss_pose(g, 0.25)[0], gloss_pose(g, 0.0)[3])
                  for g in range(len(vocab))}
    assert len(signatures) == len(vocab)


def test_rendered_video_length_follows_glosses():
    video = plan_videos(dataset_spec("CSL-Daily"), "tiny", 0)[0]
    frames = render_video(video, 64, 48, (3, 3))
    assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert 2 + 2 * len(video.glosses) <= len(frames) <= 2 + 4 * len(video.glosses)


def test_camera_style_films_the_same_scene_at_camera_frame_sizes():
    """Camera-like frames: same scene as 'clean', deterministic, and as costly to store as real video."""
    video = plan_videos(dataset_spec("phoenix2014"), "tiny", 0)[0]
    clean = render_video(video, 210, 260, (2, 2))
    camera = render_camera_video(video, 210, 260, (2, 2))
    assert len(camera) == len(clean) and camera[0].shape == clean[0].shape == (260, 210, 3)
    assert all(np.array_equal(a, b) for a, b in zip(camera, render_camera_video(video, 210, 260, (2, 2))))
    # Same scene: the camera's changes are mostly light and noise, not different content.
    assert np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(camera, clean)]) < 25

    def png_kib(frames):
        return np.mean([len(cv2.imencode(".png", f, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1]) for f in frames]) / 1024

    # Real PHOENIX frames are 210x260 PNGs of roughly 60-100 KB; drawn frames are a few KB.
    assert 40 < png_kib(camera) < 120 and png_kib(clean) < 15
    # Sensor noise: consecutive frames differ everywhere a little, unlike drawn frames.
    assert np.abs(camera[1].astype(int) - camera[0].astype(int)).mean() > 1.0


def test_bad_arguments():
    from dataset.synthetic import generate

    with pytest.raises(ValueError, match="unknown style"):
        generate("phoenix2014", "x", style="film")

    with pytest.raises(ValueError, match="unknown format"):
        generate("phoenix", "x")
    with pytest.raises(ValueError, match="unknown size"):
        generate("CSL-Daily", "x", size="huge")
