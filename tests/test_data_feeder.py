"""BaseFeeder, transforms, collate and the packed fast path on tiny preprocessed synthetic data."""
from __future__ import annotations

import math
import pickle
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset.collate import pad_collate, temporal_padding
from dataset.feeder import BaseFeeder
from dataset.feeder_options import FeederOptions
from dataset.packed import PackedFrames, packed_paths
from dataset.synthetic import generate
from dataset.transforms import TemporalRescale, build_transform, center_crop_params, model_input
from preprocess.cli import main as preprocess
from tests.train_support import make_feeder

RES = "40x32px"  # width 40, height 32
FORMATS = ("phoenix2014", "phoenix2014-T", "CSL-Daily")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, dict]:
    """Tiny synthetic sets of every format, preprocessed with resized frames and packs."""
    base = tmp_path_factory.mktemp("feeder")
    sets = {}
    for fmt in FORMATS:
        root, out = base / fmt / "raw", base / fmt / "pre"
        generate(fmt, root, size="tiny", seed=5)
        assert preprocess(fmt, ["--dataset-root", str(root), "--output-dir", str(out), "--output-res", RES,
                                "-p", "--pack", "--pack-format", "png"]) == 0
        gloss_dict = np.load(out / "gloss_dict.npy", allow_pickle=True).item()
        sets[fmt] = {"root": root, "out": out, "gloss_dict": gloss_dict}
    return sets


def _feeder(data: dict, fmt: str, mode: str = "train", **kwargs) -> BaseFeeder:
    options = dict(mode=mode, transform_mode=mode == "train", input_size=24,
                   info_dir=data["out"], frames_res=RES, temporal_min_len=4)
    options.update(kwargs)
    return make_feeder(str(data["root"]), data["gloss_dict"], fmt, **options)


@pytest.mark.parametrize("fmt", FORMATS)
def test_item_shapes_labels_and_range(fmt, prepared):
    data = prepared[fmt]
    train, test = _feeder(data, fmt), _feeder(data, fmt, mode="test")
    for feeder in (train, test):
        for index, entry in enumerate(feeder.inputs_list):
            torch.manual_seed(index)
            video, label, info = feeder[index]
            assert video.dtype == torch.uint8 and video.shape[1:] == (3, 24, 24)
            assert label.tolist() == [data["gloss_dict"][g][0] for g in entry["label"].split()]
            assert info == entry["original_info"] and info.split("|")[0] == entry["fileid"]
            if feeder is test:
                assert len(video) == entry["num_frames"]
            else:
                assert len(video) % 4 == 0 and len(video) >= 4


def test_test_transform_is_center_crop_of_the_frames(prepared):
    data = prepared["phoenix2014"]
    feeder = _feeder(data, "phoenix2014", mode="dev", input_size=20)
    files = feeder.frame_files(0)
    import cv2

    first = cv2.cvtColor(cv2.imread(files[0]), cv2.COLOR_BGR2RGB)
    top, left = round((32 - 20) / 2), round((40 - 20) / 2)
    expected = torch.from_numpy(first[top:top + 20, left:left + 20]).permute(2, 0, 1)
    assert torch.equal(feeder[0][0][0], expected)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", ["train", "test"])
def test_packed_equals_plain(fmt, mode, prepared):
    data = prepared[fmt]
    plain = _feeder(data, fmt, mode=mode, frame_interval=2)
    packed = _feeder(data, fmt, mode=mode, frame_interval=2, packed=True)
    for seed in range(3):
        for index in range(len(plain)):
            torch.manual_seed(100 * seed + index)
            a = plain[index]
            torch.manual_seed(100 * seed + index)
            b = packed[index]
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]


def test_packed_reader_survives_pickling_and_checks_size(prepared, tmp_path):
    out = prepared["CSL-Daily"]["out"] / f"packed-{RES}"
    pack = PackedFrames.open(out, "dev")
    clone = pickle.loads(pickle.dumps(pack))
    fileid = next(iter(pack.index["videos"]))
    every = np.arange(pack.num_frames(fileid))
    frames, where = pack.read(fileid, every)
    assert np.array_equal(frames[where], clone.read(fileid, every)[0][where]) and frames.shape[1:] == (32, 40, 3)
    paths = packed_paths(out, "dev")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / paths.data("png").name).write_bytes(paths.data("png").read_bytes()[:-1])
    for name in (paths.index.name, paths.table.name):
        (broken / name).write_bytes((out / name).read_bytes())
    with pytest.raises(ValueError, match="re-pack"):
        PackedFrames.open(broken, "dev")
    with pytest.raises(FileNotFoundError, match="--pack"):
        PackedFrames.open(tmp_path, "dev")


def test_collate_pads_with_first_and_last_frames():
    kernel_sizes = ["K5", "P2", "K5", "P2"]
    assert temporal_padding(kernel_sizes) == (6, 4)
    assert temporal_padding(["K3"]) == (1, 1) and temporal_padding(["K5", "K5", "P2"]) == (4, 2)
    short = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 3, 2, 2)
    long = 10 + torch.arange(9, dtype=torch.float32).view(9, 1, 1, 1).expand(9, 3, 2, 2)
    batch = [(short, torch.tensor([1, 2]), "a"), (long, torch.tensor([3]), "b")]
    video, length, labels, label_length, info = pad_collate(batch, kernel_sizes)
    total = math.ceil(9 / 4) * 4 + 2 * 6
    assert video.shape == (2, total, 3, 2, 2) and info == ["b", "a"]  # longest first
    assert length.tolist() == [total, math.ceil(5 / 4) * 4 + 12]
    assert labels.tolist() == [3, 1, 2] and label_length.tolist() == [1, 2]
    frames_b = video[0, :, 0, 0, 0].tolist()
    assert frames_b == [10.0] * 6 + [10.0 + i for i in range(9)] + [18.0] * (total - 15)
    frames_a = video[1, :, 0, 0, 0].tolist()
    assert frames_a == [0.0] * 6 + [0.0, 1.0, 2.0, 3.0, 4.0] + [4.0] * (total - 11)


@pytest.mark.parametrize("mode", ["train", "test"])
def test_uint8_batch_normalised_after_collate_equals_float_collate(mode, prepared):
    """The model's input is unchanged by collating uint8: same values, dtype and strides as before."""
    data = prepared["phoenix2014"]
    feeder = _feeder(data, "phoenix2014", mode=mode)
    items = []
    for index in range(len(feeder)):
        torch.manual_seed(index)
        items.append(feeder[index])
    # Today's formulation, written out: each clip normalised to float in the worker, then padded.
    floats = [(v.float() / 127.5 - 1.0, lab, info) for v, lab, info in items]
    reference, ref_len, ref_lab, ref_lab_len, ref_info = feeder.collate_fn(floats)
    batch, length, labels, label_length, info = feeder.collate_fn(items)
    assert batch.dtype == torch.uint8 and batch.element_size() * 4 == reference.element_size()
    seen = model_input(batch)
    assert seen.dtype == torch.float32 and torch.equal(seen, reference)
    assert seen.stride() == reference.stride()
    assert torch.equal(length, ref_len) and torch.equal(labels, ref_lab) and info == ref_info
    assert model_input(reference) is reference  # float batches (features, tools) pass through


def test_collate_features_and_empty_labels():
    a, b = torch.randn(3, 4), torch.randn(5, 4)
    video, length, labels, label_length, _ = pad_collate(
        [(a, torch.zeros(0, dtype=torch.long), "a"), (b, torch.zeros(0, dtype=torch.long), "b")], ["K5", "P2"])
    assert video.shape == (2, 4, 5) and length.tolist() == [5, 3]
    assert torch.equal(video[1, :, :3], a.T)
    assert torch.equal(video[1, :, 3], a[-1]) and torch.equal(video[1, :, 4], a[-1])
    assert labels.numel() == 0 and label_length.tolist() == [0, 0]
    with pytest.raises(ValueError, match="K<int>"):
        temporal_padding(["X3"])


def test_feeder_collate_uses_its_kernel_sizes(prepared):
    feeder = _feeder(prepared["phoenix2014"], "phoenix2014", mode="test", kernel_size=["K3", "P2"])
    video, length, _, _, _ = feeder.collate_fn([feeder[0], feeder[1]])
    longest = max(e["num_frames"] for e in feeder.inputs_list[:2])
    assert video.shape[1] == math.ceil(longest / 2) * 2 + 2


@pytest.mark.parametrize("multiple", [1, 8, 16])
def test_pad_to_multiple_adds_last_frames_and_keeps_the_lengths(multiple):
    kernel_sizes = ["K5", "P2", "K5", "P2"]
    clips = [torch.arange(t, dtype=torch.float32).view(t, 1, 1, 1).expand(t, 3, 2, 2) for t in (9, 5)]
    batch = [(clip, torch.tensor([1]), str(i)) for i, clip in enumerate(clips)]
    plain, plain_len, *_ = pad_collate(batch, kernel_sizes)
    video, length, *_ = pad_collate(batch, kernel_sizes, pad_to_multiple=multiple)
    total = plain.shape[1]  # 24: the original's padding
    assert video.shape[1] == math.ceil(total / multiple) * multiple
    assert torch.equal(video[:, :total], plain) and torch.equal(length, plain_len)
    assert torch.equal(video[:, total:], plain[:, -1:].expand(-1, video.shape[1] - total, -1, -1, -1))
    features = [(torch.randn(t, 4), torch.tensor([1]), "f") for t in (3, 5)]
    padded, lengths, *_ = pad_collate(features, kernel_sizes, pad_to_multiple=multiple)
    assert padded.shape[2] == math.ceil(5 / multiple) * multiple and lengths.tolist() == [5, 3]
    with pytest.raises(ValueError, match="pad_to_multiple must be >= 1"):
        pad_collate(batch, kernel_sizes, pad_to_multiple=0)


def test_feeder_pads_training_batches_only(prepared):
    data = prepared["phoenix2014"]
    for mode, expected in (("train", 32), ("test", 1)):
        feeder = _feeder(data, "phoenix2014", mode=mode, pad_to_multiple=32)
        video, *_ = feeder.collate_fn([feeder[0], feeder[1]])
        assert feeder.pad_to_multiple == expected and video.shape[1] % expected == 0
    with pytest.raises(ValueError, match="pad_to_multiple"):
        _feeder(data, "phoenix2014", mode="train", pad_to_multiple=0)


def test_unknown_glosses_warn_once_or_raise(prepared):
    data = dict(prepared["phoenix2014"])
    gloss_dict = dict(data["gloss_dict"])
    train_info = np.load(data["out"] / "train_info.npy", allow_pickle=True).item()
    missing = train_info[0]["label"].split()[0]
    del gloss_dict[missing]
    data["gloss_dict"] = gloss_dict
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feeder = _feeder(data, "phoenix2014", mode="train")
        feeder[0], feeder[1]
    messages = [str(w.message) for w in caught if missing in str(w.message)]
    assert len(messages) == 1 and "not in the gloss dict" in messages[0]
    for entry, ids in zip(feeder.inputs_list, feeder.labels):
        assert ids == [gloss_dict[g][0] for g in entry["label"].split() if g != missing]
    with pytest.raises(KeyError, match=missing):
        _feeder(data, "phoenix2014", mode="train", unknown_glosses="error")


def test_features_mode(prepared, tmp_path):
    data = prepared["CSL-Daily"]
    feeder = _feeder(data, "CSL-Daily", mode="dev", datatype="features", features_dir=tmp_path)
    (tmp_path / "dev").mkdir()
    for i, entry in enumerate(feeder.inputs_list):
        np.save(tmp_path / "dev" / f"{entry['fileid']}_features.npy",
                {"features": np.full((3 + i, 6), i, np.float32), "label": [1, 2]}, allow_pickle=True)
    features, label, info = feeder[1]
    assert features.shape == (4, 6) and label.tolist() == [1, 2] and info == feeder.inputs_list[1]["original_info"]
    video, length, *_ = feeder.collate_fn([feeder[0], feeder[1]])
    assert video.shape == (2, 6, 4) and length.tolist() == [4, 3]


def test_missing_inputs_have_clear_errors(prepared, tmp_path):
    data = prepared["phoenix2014"]
    with pytest.raises(FileNotFoundError, match="preprocess"):
        _feeder(dict(data, out=tmp_path), "phoenix2014")
    feeder = _feeder(data, "phoenix2014", frames_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset_info.frames_dir .* holds no frames"):
        feeder[0]
    with pytest.raises(FileNotFoundError, match="--pack"):
        _feeder(data, "phoenix2014", packed=True, packed_dir=tmp_path)


def test_original_info_files_still_load(prepared, tmp_path):
    """Info files of the original tools: '<split>/<name>/1/*.png' folders for -T, no 'prefix' for CSL-Daily."""
    data = prepared["phoenix2014-T"]
    info = np.load(data["out"] / "dev_info.npy", allow_pickle=True).item()
    for key, entry in info.items():
        if key != "prefix":
            entry["folder"] = entry["folder"].replace("/*.png", "/1/*.png")
    np.save(tmp_path / "dev_info.npy", info, allow_pickle=True)
    old = _feeder(dict(data, out=tmp_path), "phoenix2014-T", mode="dev")
    new = _feeder(data, "phoenix2014-T", mode="dev")
    assert torch.equal(old[0][0], new[0][0])
    csl = prepared["CSL-Daily"]
    info = np.load(csl["out"] / "test_info.npy", allow_pickle=True).item()
    del info["prefix"]
    np.save(tmp_path / "test_info.npy", info, allow_pickle=True)
    assert len(_feeder(dict(csl, out=tmp_path), "CSL-Daily", mode="test")) == len(info)


def test_temporal_rescale_bounds_and_sampling():
    torch.manual_seed(0)
    rescale = TemporalRescale(scaling=0.2, min_len=8, max_len=40, frame_interval=2)
    for num_frames in (3, 10, 30, 100):
        for _ in range(20):
            index = rescale.sample(num_frames)
            assert len(index) % 4 == 0 and 8 <= len(index) <= 20 + 3
            assert np.all(np.diff(index) >= 0) and index.min() >= 0 and index.max() < num_frames
            if len(index) <= num_frames:
                assert len(set(index.tolist())) == len(index)  # shrinking draws without replacement


def test_transform_flip_and_crop_are_shared_by_all_frames():
    frames = np.random.default_rng(0).integers(0, 256, size=(6, 10, 12, 3), dtype=np.uint8)
    augmentation = FeederOptions.recipe(temporal_min_len=1, temporal_scaling=0.0).augmentation
    transform = build_transform(True, 8, 1.0, replace(augmentation, flip_prob=1.0))
    torch.manual_seed(3)
    out = transform(frames)
    assert out.shape == (8, 3, 8, 8)  # 6 frames rounded up to a multiple of 4, by repetition
    matches = [(t, y, x) for y in range(3) for x in range(5)
               if np.array_equal(frames[0, y:y + 8, x:x + 8][:, ::-1],
                                 ((out[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy())
               for t in [0]]
    assert matches, "first output frame is not a flipped crop of the first input frame"
    test = build_transform(False, 8, 1.0)
    p = center_crop_params(10, 12, 8)
    assert (p.top, p.left, p.height, p.width) == (1, 2, 8, 8)
    assert torch.equal(test(frames), torch.from_numpy(frames[:, 1:9, 2:10]).permute(0, 3, 1, 2).float() / 127.5 - 1)
    padded = build_transform(True, 14, 1.0, augmentation)(frames[:4])
    assert padded.shape == (4, 3, 14, 14)


def test_synthetic_root_layout_used_by_feeder(prepared):
    feeder = _feeder(prepared["CSL-Daily"], "CSL-Daily", mode="test")
    assert feeder.frames_dir == Path(prepared["CSL-Daily"]["root"]) / "sentence" / "frames_40x32"
