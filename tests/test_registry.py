"""The dataset registry: one entry per dataset, read by preprocessing, feeders, scoring and the tools."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset.images import read_rgb
from dataset.layout import frames_root, parse_resolution, raw_frames_root, resolution_tag
from dataset.registry import DATASETS, NAMES, dataset_for_language, dataset_spec, language_choices
from dataset.synthetic import FORMATS, VIDEO_FORMATS
from evaluation.normalise import RULES, normalise_glosses
from inference.loading import default_dict_path
from inference.video import VideoReadError, read_frame_folder
from preprocess.datasets import PARSERS
from utils.errors import BadFileError, ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_is_complete(name):
    spec = DATASETS[name]
    assert spec.name == name and (name in PARSERS) != spec.from_table  # preprocessing can read it
    assert (REPO_ROOT / spec.preprocess_script).is_file()
    assert spec.gloss_normalisation is None or spec.gloss_normalisation in RULES
    assert dataset_for_language(spec.language_names[0]) is spec
    assert default_dict_path(spec.language_names[0]) == Path("preprocess") / name / "gloss_dict.npy"
    raw_dir = Path("/r", spec.raw_frames_dir) if spec.raw_frames_dir is not None else None
    assert raw_frames_root(spec, "/r") == (raw_dir or frames_root(spec, "/r", spec.raw_frame_tag))
    assert spec.evaluation_prefix == f"{name}-groundtruth"


def test_preprocessing_and_the_generator_cover_the_registry_only():
    assert sorted(PARSERS) == sorted(name for name in NAMES if not DATASETS[name].from_table)
    assert set(FORMATS) | set(VIDEO_FORMATS) == set(NAMES)


def test_layout_of_the_four_downloads():
    assert frames_root(dataset_spec("phoenix2014"), "/r", "256x256px") == Path("/r/features/fullFrame-256x256px")
    assert frames_root(dataset_spec("phoenix2014-T"), "/r", "256x256") == Path("/r/features/fullFrame-256x256px")
    assert raw_frames_root(dataset_spec("phoenix2014"), "/r") == Path("/r/features/fullFrame-210x260px")
    assert frames_root(dataset_spec("CSL-Daily"), "/r", "256x256px") == Path("/r/sentence/frames_256x256")
    assert raw_frames_root(dataset_spec("CSL-Daily"), "/r") == Path("/r/sentence/frames_512x512")
    assert frames_root(dataset_spec("CSL"), "/r", "256x256px") == Path("/r/features/fullFrame-256x256px")
    assert raw_frames_root(dataset_spec("CSL"), "/r") == Path("/r")  # video<N>/ folders in the root itself
    assert DATASETS["CSL"].splits == ("train", "dev") and DATASETS["CSL"].evaluation_prefix == "CSL-groundtruth"


def test_language_names_are_those_of_the_original_tool():
    assert language_choices() == ["phoenix", "phoenix2014-T", "csl-daily", "csl", "table"]
    assert [dataset_for_language(x).name for x in ("phoenix", "phoenix2014", "csl-daily", "csl")] == \
        ["phoenix2014", "phoenix2014", "CSL-Daily", "CSL"]


def test_unknown_names_are_config_errors_with_the_closest_name():
    with pytest.raises(ConfigError, match=r"unknown dataset 'phoenix2014T' .*did you mean 'phoenix2014-T'"):
        dataset_spec("phoenix2014T")
    with pytest.raises(ConfigError, match=r"unknown language 'phenix'.*did you mean 'phoenix'"):
        dataset_for_language("phenix")
    with pytest.raises(ConfigError, match="unknown dataset 'CSL-Dialy'"):
        normalise_glosses(["A"], dataset_spec("CSL-Dialy"))
    with pytest.raises(ConfigError, match="bad resolution"):
        parse_resolution("256px")
    assert resolution_tag(" 64x48 ") == "64x48px"


def test_scoring_rules_follow_the_entry():
    glosses = ["loc-REGEN", "__EMOTION__", "S0NNE"]
    assert normalise_glosses(glosses, dataset_spec("phoenix2014")) == \
        normalise_glosses(glosses, dataset_spec("phoenix2014-T")) == \
        ["REGEN", "SONNE"]
    assert normalise_glosses(glosses, dataset_spec("CSL-Daily")) == glosses


def test_registry_module_imports_nothing_heavy():
    code = ("import sys, dataset.registry, dataset.layout, evaluation.normalise; "
            "print(sorted(m for m in ('torch', 'cv2', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def _write_png(path: Path, rgb: np.ndarray) -> None:
    """Encode with OpenCV and write the bytes with NumPy (no path handling by OpenCV)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    buf.tofile(str(path))


def test_the_frame_reader_reads_non_ascii_paths(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    folder = tmp_path / "Gebärdensprache_手语" / "视频"
    for i in range(3):
        _write_png(folder / f"帧{i:02d}.png", np.roll(rgb, i, axis=0))
    assert np.array_equal(read_rgb(folder / "帧00.png"), rgb)
    clip = read_frame_folder(folder, max_frames=3, size=None)  # the inference tools' frame folders
    assert np.array_equal(clip.frames, np.stack([np.roll(rgb, i, axis=0) for i in range(3)]))


def test_the_frame_reader_names_a_missing_or_damaged_file(tmp_path):
    with pytest.raises(BadFileError, match=r"cannot read image .*nope\.png \(missing or corrupt\)"):
        read_rgb(tmp_path / "nope.png")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0.png").write_bytes(b"not a png")
    with pytest.raises(BadFileError, match="0.png"):
        read_rgb(tmp_path / "bad" / "0.png")
    with pytest.raises(VideoReadError, match=r"cannot decode image .*0\.png; remove it"):
        read_frame_folder(tmp_path / "bad", max_frames=3, size=None)
