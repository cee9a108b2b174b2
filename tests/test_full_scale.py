"""The full-scale rehearsal (bench/full_scale.py) and the generator's PHOENIX-2014-sized plan."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset.registry import dataset_spec
from dataset.synthetic import PHOENIX_GLOSS_COUNTS, SIZES, frame_poses, plan_videos

BENCH = Path(__file__).resolve().parents[1] / "bench" / "full_scale.py"


@pytest.fixture(scope="module")
def full_scale():
    """bench/full_scale.py as a module."""
    spec = importlib.util.spec_from_file_location("bench_full_scale", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_full_scale"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["bench_full_scale"]


def test_phoenix_plan_has_the_real_counts_and_lengths():
    """--size phoenix: PHOENIX-2014's video counts; sentence lengths from the embedded histogram;
    mean video lengths near the published 141 / 139 / 142 frames."""
    videos = plan_videos(dataset_spec("phoenix2014"), "phoenix", 0)
    counts = {split: sum(v.split == split for v in videos) for split in ("train", "dev", "test")}
    assert counts == {"train": 5672, "dev": 540, "test": 629}
    allowed = {n for n, _ in PHOENIX_GLOSS_COUNTS}
    assert {len(v.glosses) for v in videos} <= allowed
    train = [v for v in videos if v.split == "train"]
    mean_glosses = np.mean([len(v.glosses) for v in train])
    published = sum(n * k for n, k in PHOENIX_GLOSS_COUNTS) / sum(k for _, k in PHOENIX_GLOSS_COUNTS)
    assert abs(mean_glosses - published) < 0.2  # 5,672 draws from a histogram of mean 10.3
    spec = SIZES["phoenix"]
    lengths = [len(frame_poses(v, spec.frames_per_gloss, np.random.default_rng(list(v.seed)))) for v in train]
    assert 130 < np.mean(lengths) < 150 and min(lengths) >= 30


def test_fraction_keeps_the_first_videos_of_each_split():
    """A fraction of the plan is a prefix of every split of the whole plan (at least one video)."""
    whole = plan_videos(dataset_spec("phoenix2014"), "phoenix", 0)
    part = plan_videos(dataset_spec("phoenix2014"), "phoenix", 0, fraction=0.01)
    for split, count in (("train", 57), ("dev", 5), ("test", 6)):
        first = [v for v in whole if v.split == split][:count]
        assert [v for v in part if v.split == split] == first
    assert len(plan_videos(dataset_spec("phoenix2014"), "tiny", 0, fraction=0.01)) == 3  # at least one per split


def test_generator_renders_at_the_frame_size_asked(tmp_path):
    """--frame-size renders smaller frames in the same layout; the record says so."""
    import cv2

    from dataset.synthetic import generate

    counts = generate("phoenix2014", tmp_path / "d", "tiny", frame_size=(52, 65), fraction=0.5)
    frames = sorted((tmp_path / "d").rglob("*.png"))
    assert counts["videos"] == 4 and len(frames) == counts["frames"]  # tiny's 4 / 2 / 2, halved
    assert cv2.imread(str(frames[0])).shape == (65, 52, 3)
    record = json.loads((tmp_path / "d" / ".synthetic.json").read_text())
    assert record["frame_size"] == [52, 65] and record["fraction"] == 0.5


def test_extrapolation_scales_time_bytes_and_memory(full_scale):
    """Time by the measured per-frame ratio and the published/ours frames; memory adds the sample's growth."""
    stage = full_scale.Stage
    full = stage("pack", wall_s=100.0, frames=1000, parent_peak_kib=1024 * 100, disk_bytes=10_000)
    small = stage("pack", wall_s=1.0, frames=10, parent_peak_kib=1024 * 50, disk_bytes=100)
    large = stage("pack", wall_s=3.0, frames=10, parent_peak_kib=1024 * 80, child_peaks_kib=[1024 * 90],
                  disk_bytes=500)
    ratio, seconds, nbytes, peak = full_scale.extrapolate(full, small, large, ours=1000, published=2000)
    assert ratio == pytest.approx(3.0)
    assert seconds == pytest.approx(100.0 * 3 * 2)
    assert nbytes == 10_000 * 5 * 2
    assert peak == pytest.approx(100 + (90 - 50))


def test_whole_pipeline_at_a_thousandth(full_scale, tmp_path, capsys):
    """Every stage runs at 0.1 % of PHOENIX-2014 (6 / 1 / 1 videos) and the table has a row each."""
    status = full_scale.main(["--work", str(tmp_path / "w"), "--fraction", "0.001", "--sample", "0",
                              "--scale", "8", "--steps", "1", "--workers", "1"])
    out = capsys.readouterr().out
    assert status == 0
    assert "train: 6 videos" in out and "dev: 1 videos" in out and "test: 1 videos" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith(("| stage", "| ---"))]
    names = [row.split(" | ")[0][2:] for row in rows]
    assert names == ["generate", "preprocess (-p -m)", "pack (--pack)", "start-up checks, per-frame files",
                     "start-up checks, pack", "train, 1 steps (1 workers)", "evaluate dev"]
    assert all(float(row.split(" | ")[1].split()[0]) > 0 for row in rows)  # wall times
    assert not (tmp_path / "w" / "full").exists()  # removed without --keep
