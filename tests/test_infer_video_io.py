"""inference.video: natural order, uniform sampling, lossless round trip, both decoders, bad input."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from inference.video import (VideoReadError, load_frames, natural_key, uniform_indices, write_video)


def _frames(count: int = 10, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Random RGB uint8 frames."""
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def _write_folder(folder, frames: np.ndarray, pattern: str = "frame{}.png") -> None:
    """Write frames as PNG images named with unpadded numbers (frame0 ... frame10)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / pattern.format(i)), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def test_natural_key_orders_numbers_by_value():
    names = ["frame10.png", "frame9.png", "frame1.png", "Frame2.png", "frame100.png"]
    assert sorted(names, key=natural_key) == ["frame1.png", "Frame2.png", "frame9.png",
                                              "frame10.png", "frame100.png"]


def test_uniform_indices():
    assert uniform_indices(5, 10) == [0, 1, 2, 3, 4]
    assert uniform_indices(10, 4) == np.linspace(0, 9, 4).astype(int).tolist() == [0, 3, 6, 9]
    picked = uniform_indices(1000, 360)
    assert len(picked) == 360 and picked[0] == 0 and picked[-1] == 999
    assert all(b > a for a, b in zip(picked, picked[1:]))
    assert uniform_indices(0, 5) == []


def test_folder_natural_order_and_sampling(tmp_path):
    frames = _frames(12)
    _write_folder(tmp_path / "v", frames)
    (tmp_path / "v" / "notes.txt").write_text("not an image")
    clip = load_frames(tmp_path / "v", max_frames=360, size=None)
    assert clip.backend == "images" and clip.total_frames == 12
    np.testing.assert_array_equal(clip.frames, frames)  # frame10 after frame9, PNG is lossless
    sampled = load_frames(tmp_path / "v", max_frames=4, size=None)
    assert sampled.source_indices == (0, 3, 7, 11)
    np.testing.assert_array_equal(sampled.frames, frames[[0, 3, 7, 11]])


def test_resize_matches_preprocessing(tmp_path):
    frames = _frames(3)
    _write_folder(tmp_path / "v", frames)
    clip = load_frames(tmp_path / "v", max_frames=10)
    assert clip.frames.shape == (3, 256, 256, 3)
    expected = cv2.resize(frames[1], (256, 256), interpolation=cv2.INTER_LANCZOS4)
    np.testing.assert_array_equal(clip.frames[1], expected)


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_lossless_video_equals_frames(tmp_path, backend):
    frames = _frames(11)
    write_video(tmp_path / "v.mp4", frames, fps=25, lossless=True)
    clip = load_frames(tmp_path / "v.mp4", max_frames=5, size=None, backend=backend)
    assert clip.backend == backend and clip.total_frames == 11
    assert clip.source_indices == tuple(np.linspace(0, 10, 5).astype(int).tolist())
    np.testing.assert_array_equal(clip.frames, frames[list(clip.source_indices)])


def test_lossy_video_is_close(tmp_path):
    frames = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, None, :, None], 48, axis=1)
    frames = np.repeat(np.repeat(frames, 6, axis=0), 3, axis=3)  # smooth ramp: codec-friendly
    write_video(tmp_path / "v.mp4", frames, lossless=False)
    clip = load_frames(tmp_path / "v.mp4", max_frames=10, size=None)
    assert clip.frames.shape == frames.shape
    assert np.abs(clip.frames.astype(int) - frames.astype(int)).mean() < 4


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        load_frames(tmp_path / "nope.mp4")


def test_undecodable_video(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00not a video" * 50)
    with pytest.raises(VideoReadError, match="cannot decode video .*broken.mp4"):
        load_frames(bad)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "clip.txt"
    path.write_text("x")
    with pytest.raises(VideoReadError, match=r"unsupported video file type '\.txt'"):
        load_frames(path)


def test_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no frames here")
    with pytest.raises(VideoReadError, match="contains no images"):
        load_frames(tmp_path / "empty")


def test_corrupt_image_in_folder(tmp_path):
    _write_folder(tmp_path / "v", _frames(2))
    (tmp_path / "v" / "frame2.png").write_bytes(b"garbage")
    with pytest.raises(VideoReadError, match="frame2.png"):
        load_frames(tmp_path / "v")


def _write_with(path, frames: np.ndarray, codec: str, pix_fmt: str) -> None:
    """Write frames with an explicit PyAV codec (for the containers write_video does not target)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


@pytest.mark.parametrize("suffix, codec, pix_fmt", [(".mkv", "libx264rgb", "rgb24"),
                                                   (".mov", "libx264rgb", "rgb24"),
                                                   (".avi", "mpeg4", "yuv420p"),
                                                   (".webm", "libvpx-vp9", "yuv420p")])
def test_containers(tmp_path, suffix, codec, pix_fmt):
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    frames = np.stack([np.stack([np.roll(ramp, 4 * t)[None].repeat(48, 0)] * 3, -1) for t in range(9)])
    _write_with(tmp_path / f"v{suffix}", frames, codec, pix_fmt)
    clip = load_frames(tmp_path / f"v{suffix}", max_frames=100, size=None)
    assert clip.total_frames == 9 and clip.frames.shape == frames.shape
    assert np.abs(clip.frames.astype(int) - frames.astype(int)).mean() < 12


def test_encode_cli_never_writes_over_a_file_it_did_not_write(tmp_path, capsys):
    from inference.video import main

    _write_folder(tmp_path / "v", _frames(4))
    mine = tmp_path / "mine.mp4"
    mine.write_bytes(b"the user's video")
    assert main([str(tmp_path / "v"), str(mine)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and mine.read_bytes() == b"the user's video"
    before = sorted((p.name, p.read_bytes()) for p in (tmp_path / "v").iterdir())
    assert main([str(tmp_path / "v"), str(tmp_path / "v")]) == 2  # the input folder as the output
    assert "is the input FRAMES" in capsys.readouterr().err
    assert sorted((p.name, p.read_bytes()) for p in (tmp_path / "v").iterdir()) == before
    assert main([str(tmp_path / "v"), str(mine), "--force"]) == 0
    assert load_frames(mine, max_frames=100, size=None).total_frames == 4
