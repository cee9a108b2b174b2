"""Live recognition (inference/streaming.py, inference/live.py, test_one_video.py --stream).

Exact where the network is local: the backbone's fusion blocks and the temporal stack's leading
convs, streamed in float64, equal the offline modules; with a window as long as the stream the
committed glosses are the offline best path. Approximate where it is not (the channel gate, the
lift pools' instance norms, the BiLSTM): the trained tiny model still signs its sentence.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import test_one_video
from inference.live import TimedFrame, play
from inference.loading import load_model
from inference.network import CTCLogProbs
from inference.recognize import prepare_input
from inference.streaming import (FusionOutput, FusionTemporal, StreamedFusion, StreamingBackbone,
                                 StreamingNeedsCheckpointError, StreamingRecognizer, StreamPieces,
                                 StreamSettings, WindowDecoder)
from inference.video import load_frames, resize_frame
from modules.fusion import ChannelAttention
from slr_network import SLRModel

pytestmark = pytest.mark.usefixtures("single_thread")
WHOLE = StreamSettings(context=10 ** 4, lookahead=10 ** 4, gate_frames=None)


def _random_model(channels_last: bool | None = False, constant_gate: bool = True) -> SLRModel:
    """A float64 tiny STF-Net with non-trivial fusion (alpha), batch-norm statistics and gate."""
    torch.manual_seed(0)
    model = SLRModel(10, "resnet18", 2, hidden_size=32, base_width=8, aux_dim=16,
                     channels_last=channels_last).double().eval()
    with torch.no_grad():
        model.conv2d.alpha.copy_(torch.tensor([0.7, -0.5, 0.9]))
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    if constant_gate:
        _constant_gate(model)
    return model


def _constant_gate(model: torch.nn.Module) -> None:
    """Make every CBAM channel gate sigmoid(0) whatever it pools (its bias-free MLP's output layer
    zeroed): the one whole-clip statistic of the backbone then agrees between stream and clip."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ChannelAttention):
                module.fc[2].weight.zero_()


def _stream_backbone(backbone: StreamingBackbone, video: torch.Tensor) -> torch.Tensor:
    """(C, T) features of a (1, T, 3, H, W) video streamed frame by frame."""
    feats = []
    for t in range(video.shape[1]):
        feats += backbone.push(backbone.pieces.stem(video[:, t]))
    return torch.stack(feats + backbone.end(), dim=1)


@pytest.mark.parametrize("channels_last", [False, None])
@pytest.mark.parametrize("frames", [23, 2])
def test_backbone_streams_each_frame_exactly(channels_last, frames):
    model = _random_model(channels_last)
    video = torch.rand(1, frames, 3, 40, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        offline, _ = model.conv2d(video)
        backbone = StreamingBackbone(StreamPieces(model), gate_frames=None)
        early = [len(backbone.push(backbone.pieces.stem(video[:, t]))) for t in range(frames)]
        assert early == [int(t >= backbone.delay) for t in range(frames)]  # 3 frames per fusion block
        backbone.reset()
        streamed = _stream_backbone(backbone, video)
    torch.testing.assert_close(streamed, offline[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("gate_frames", [4, None])
def test_fusion_gate_pools_the_last_frames(gate_frames):
    """Against an independent formulation: offline modules, the CBAM run on the clip of the last
    `gate_frames` temporal frames, its last frame kept."""
    resnet = _random_model(constant_gate=False).conv2d
    block, alpha = resnet.shift1, resnet.alpha[0]
    x = torch.randn(11, 16, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        temporal = (block.fusion_weights[0] * block.t_conv[0](x, 1)
                    + block.fusion_weights[1] * block.t_conv[1](x, 1))
        first = [0 if gate_frames is None else max(0, s - gate_frames + 1) for s in range(len(x))]
        gated = torch.cat([block.cbam(temporal[f:s + 1], 1)[-1:] for s, f in enumerate(first)])
        expected = x + alpha * (x + block.st_conv(torch.cat([x, gated], 1), 1))
        fusion = StreamedFusion(FusionTemporal(block), FusionOutput(block, resnet, 0, torch.nn.Identity()),
                                gate_frames)
        streamed = [y for t in range(len(x)) for y in fusion.push(x[t:t + 1])] + fusion.end()
    torch.testing.assert_close(torch.cat(streamed), expected, rtol=0, atol=1e-12)


def test_cached_temporal_convs_and_whole_window_equal_offline():
    model = _random_model()
    feats = torch.randn(1, 64, 29, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        decoder = WindowDecoder(StreamPieces(model))
        columns = list(feats[0].unbind(1))
        for chunk in (columns[:3], columns[3:4], columns[4:17], columns[17:]):  # any arrival pattern
            decoder.add(chunk)
        torch.testing.assert_close(torch.stack(decoder.cached, 1), model.conv1d.temporal_conv[0](feats)[0],
                                   rtol=0, atol=1e-12)
        conv = model.conv1d(feats, torch.tensor([29]))
        logits = model.classifier(model.temporal_model(conv["visual_feat"], conv["feat_len"]))
        assert decoder.steps_ready() == int(conv["feat_len"][0])
        torch.testing.assert_close(decoder.log_probs(0), logits[:, 0].float().log_softmax(-1),
                                   rtol=0, atol=1e-6)


# ---- the recogniser on the tiny trained model ---------------------------------------------------


@pytest.fixture
def assets(infer_assets) -> dict:
    """The tiny trained model's checkpoints and its video (tests/infer_support.py)."""
    return infer_assets


def _loaded(assets, exact: bool = False):
    """The tiny trained model (greedy decoding); `exact`: float64 with a constant channel gate."""
    loaded = load_model(assets["ours"], "cpu", decode={"mode": "max"})
    if exact:
        loaded.model.double()
        _constant_gate(loaded.model)
        loaded.runner = CTCLogProbs(loaded.model)
    return loaded


def _frames(assets, loaded) -> np.ndarray:
    return load_frames(assets["folder"], size=loaded.frame_size).frames


def _offline_best_path(loaded, frames: np.ndarray) -> list[tuple[str, tuple[int, int]]]:
    """Glosses and step spans of the offline best path: argmax per step, runs collapsed."""
    prepared = prepare_input(frames, loaded.kernel_sizes, loaded.input_size, loaded.image_scale)
    dtype = next(loaded.model.parameters()).dtype
    log_probs, lengths = loaded.log_probs(prepared.video.to(dtype), prepared.length)
    best = log_probs[0, :int(lengths[0])].argmax(-1).tolist()
    names = {v[0]: g for g, v in loaded.gloss_dict.items()}
    runs, start = [], 0
    for step in range(1, len(best) + 1):
        if step == len(best) or best[step] != best[start]:
            if best[start] != 0:
                runs.append((names[best[start]], (start, step - 1)))
            start = step
    return runs


def _stream(recogniser: StreamingRecognizer, frames) -> tuple[list, list]:
    """(glosses committed while streaming, glosses committed by the flush)."""
    live = [g for frame in frames for g in recogniser.push(frame)]
    return live, recogniser.flush()


def test_whole_window_stream_is_the_offline_best_path(assets):
    loaded = _loaded(assets, exact=True)
    frames = _frames(assets, loaded)
    live, flushed = _stream(StreamingRecognizer(loaded, WHOLE), frames)
    assert live == []  # nothing is certain before the end with an unbounded look-ahead
    assert [(g.gloss, g.steps) for g in flushed] == _offline_best_path(loaded, frames)
    assert [g.gloss for g in flushed] == assets["sentence"]


def test_default_stream_signs_the_sentence(assets):
    """The tiny model learnt one 25-frame video (it is no judge of longer streams: bench/
    streaming_accuracy.py measures the demo model on long ones), shorter than its look-ahead."""
    loaded = _loaded(assets)
    recogniser = StreamingRecognizer(loaded)
    live, flushed = _stream(recogniser, _frames(assets, loaded))
    assert recogniser.gloss_lookahead_frames() > assets["num_frames"] and live == []
    assert [g.gloss for g in flushed] == assets["sentence"]
    assert [g.times for g in flushed] == [(g.frames[0] / 25, g.frames[1] / 25) for g in flushed]


@pytest.mark.parametrize("lookahead", [0, 3])
def test_a_step_is_committed_exactly_the_lookahead_after_its_last_frame(assets, lookahead):
    loaded = _loaded(assets)
    recogniser = StreamingRecognizer(loaded, StreamSettings(context=6, lookahead=lookahead))
    committed = []
    for index, frame in enumerate(np.concatenate([_frames(assets, loaded)] * 3)):
        before = recogniser.committed_steps
        recogniser.push(frame)
        committed += [(step, index) for step in range(before, recogniser.committed_steps)]
    # The first commit waits for a window long enough for the lift pools (2 steps); then each step
    # waits for the fusion blocks' 9 frames, the stack's reach (its left padding, 6) and the look-ahead.
    later = [(step, index) for step, index in committed if index > committed[0][1]]
    assert len(later) > 8
    stride = recogniser.stride
    assert {index - ((step + 1) * stride - 1) for step, index in later} == {recogniser.lookahead_frames()}
    assert recogniser.lookahead_frames() == 9 + 6 + stride * lookahead


def test_a_stream_shorter_than_the_lookahead_is_recognised_at_the_flush(assets):
    loaded = _loaded(assets, exact=True)
    recogniser = StreamingRecognizer(loaded, StreamSettings(context=2, lookahead=8, gate_frames=None))
    frames = _frames(assets, loaded)[:recogniser.gloss_lookahead_frames() - 1]
    live, flushed = _stream(recogniser, frames)
    assert live == [] and flushed  # the window reaches back to the start: the offline clip
    assert [(g.gloss, g.steps) for g in flushed] == _offline_best_path(loaded, frames)
    assert _stream(recogniser, frames[:3]) == ([], [])  # too short for the model: nothing, no error


def test_a_stream_stopping_mid_gloss_flushes_the_last_gloss(assets):
    loaded = _loaded(assets)
    frames = _frames(assets, loaded)
    *_, (last_gloss, (first, last)) = _offline_best_path(loaded, frames)
    cut = frames[:(first + last + 1) * 2]  # the middle of the last gloss's frames (stride 4)
    live, flushed = _stream(StreamingRecognizer(loaded, StreamSettings(context=8, lookahead=1)), cut)
    assert [g.gloss for g in live + flushed] == [g for g, _ in _offline_best_path(loaded, cut)]
    assert flushed[-1].gloss == last_gloss and flushed[-1].committed_frame == len(cut) - 1
    assert flushed[-1].frames[1] == len(cut) - 1


def test_reset_mid_stream_forgets_it(assets):
    loaded = _loaded(assets)
    frames = _frames(assets, loaded)
    fresh = _stream(StreamingRecognizer(loaded), frames)
    recogniser = StreamingRecognizer(loaded)
    for frame in frames[:len(frames) // 2]:
        recogniser.push(frame)
    recogniser.reset()
    assert _stream(recogniser, frames) == fresh


def test_frames_of_changing_size_are_each_resized_as_preprocessing_does(assets):
    loaded = _loaded(assets)
    raw = [f for f in load_frames(assets["folder"], size=None).frames]  # the raw 210x260 frames
    mixed = [resize_frame(f, (300, 240) if i % 3 == 1 else (180, 150) if i % 3 == 2 else None)
             for i, f in enumerate(raw)]
    assert len({f.shape for f in mixed}) == 3
    streamed = _stream(StreamingRecognizer(loaded), mixed)
    assert streamed == _stream(StreamingRecognizer(loaded), [resize_frame(f, loaded.frame_size) for f in mixed])
    assert [g.gloss for g in streamed[0] + streamed[1]] == assets["sentence"]


class _SimulatedTime:
    """A clock that advances only when slept on or when the recogniser works (`cost` s a frame)."""

    def __init__(self, recogniser: StreamingRecognizer, cost: float) -> None:
        self.now, self.recogniser, self.cost = 0.0, recogniser, cost

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def push(self, frame, time=None):
        self.now += self.cost
        return self.recogniser.push(frame, time)

    def flush(self):
        return self.recogniser.flush()


@pytest.mark.parametrize("speed", [1.0, 2.0])
def test_a_stream_faster_than_the_machine_drops_the_oldest_frames(assets, speed):
    """25 fps frames, 30 ms of work a frame (a simulated clock): real time keeps up and recognises
    every frame; at 2x (a frame every 20 ms) a third of the frames is dropped, oldest first, and the
    queue never grows past its bound."""
    loaded = _loaded(assets)
    frames = np.concatenate([_frames(assets, loaded)] * 3)
    timed = [TimedFrame(f, i / 25) for i, f in enumerate(frames)]
    sim = _SimulatedTime(StreamingRecognizer(loaded), cost=0.03)
    result = play(timed, sim, speed=speed, queue_size=3, clock=sim.clock, sleep=sim.sleep)
    assert result.arrived == len(frames) == result.processed + result.dropped
    assert result.longest_queue <= 3
    if speed == 1.0:
        every = play(timed, StreamingRecognizer(loaded), speed=None)
        assert result.dropped == 0 and result.sentence == every.sentence
        assert [g for g, _ in result.glosses] == [g for g, _ in every.glosses]
    else:  # every 60 ms: 3 frames arrive, 2 are recognised
        assert abs(result.dropped - len(frames) / 3) <= 3
    assert result.glosses and all(latency >= 0 for _, latency in result.glosses)


def test_exported_graphs_are_refused_with_the_reason(assets):
    loaded = _loaded(assets)
    loaded.model = None
    with pytest.raises(StreamingNeedsCheckpointError, match="checkpoint"):
        StreamingRecognizer(loaded)


def test_cli_stream_prints_each_gloss_with_its_time(assets, capsys):
    argv = ["--model_path", str(assets["ours"]), "--video_path", str(assets["lossless"]),
            "--device", "cpu", "--decode-mode", "max", "--stream", "--speed", "0"]
    assert test_one_video.main(argv) == 0
    out = capsys.readouterr()
    *lines, total = out.out.strip().splitlines()
    assert total == f"output glosses: {' '.join(assets['sentence'])}"
    assert [line.split()[1] for line in lines] == assets["sentence"]
    assert all(line.split()[0].endswith("s") for line in lines)
    assert "look-ahead" in out.err and "0 dropped" in out.err
    assert test_one_video.main(argv + ["--json", "--lookahead", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sentence"].split() == assets["sentence"] and result["settings"]["lookahead"] == 2
    assert result["processed"] == result["frames"] == assets["num_frames"]
    assert test_one_video.main(argv[:-1] + ["4", "--json", "--queue", "2"]) == 0  # paced: 4x real time
    result = json.loads(capsys.readouterr().out)
    assert result["processed"] + result["dropped"] == result["frames"] == assets["num_frames"]


def test_cli_camera_that_does_not_exist_is_one_error_line(assets, capsys):
    assert test_one_video.main(["--model_path", str(assets["ours"]), "--camera", "97",
                                "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: cannot open camera 97")


def test_the_state_held_stays_bounded_on_a_long_stream(assets):
    loaded = _loaded(assets)
    recogniser = StreamingRecognizer(loaded, StreamSettings(context=4, lookahead=2, gate_frames=16))
    held = []
    for frame in np.concatenate([_frames(assets, loaded)] * 8):
        recogniser.push(frame)
        held.append(recogniser.held_bytes())
    assert len(held) == 200 and max(held[100:]) == max(held[50:100]) > 0
    assert len(recogniser.times) < 40  # the timestamps of frames a gloss may still start at


def test_exported_stream_pieces_drive_the_same_recogniser(assets, tmp_path, capsys):
    import export

    out = tmp_path / "stream"
    assert export.main(["--model_path", str(assets["ours"]), "--input", "stream", "--out", str(out)]) == 0
    assert "stream.vocab.json" in capsys.readouterr().out
    exported = load_model(out, "cpu", decode={"mode": "max"})
    loaded = _loaded(assets)
    frames = np.concatenate([_frames(assets, loaded)] * 2)
    settings = StreamSettings(context=6, lookahead=2)
    ours, theirs = StreamingRecognizer(loaded, settings), StreamingRecognizer(exported, settings)
    for frame in frames:  # the same steps committed from log-probabilities within float32 rounding
        assert [g.gloss for g in ours.push(frame)] == [g.gloss for g in theirs.push(frame)]
        assert ours.committed_steps == theirs.committed_steps
        if ours.decoder.steps_ready():
            first = ours.decoder.first_kept_step()
            if ours.decoder.runs(first):
                torch.testing.assert_close(theirs.decoder.log_probs(first), ours.decoder.log_probs(first),
                                           rtol=0, atol=1e-4)
    assert [g.as_dict()["gloss"] for g in ours.flush()] == [g.gloss for g in theirs.flush()]
    assert test_one_video.main(["--model_path", str(out), "--video_path", str(assets["folder"]),
                                "--stream", "--speed", "0"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"output glosses: {' '.join(assets['sentence'])}"
    assert test_one_video.main(["--model_path", str(out), "--video_path", str(assets["folder"])]) == 2
    assert "is a streaming export: run it with test_one_video.py --stream" in capsys.readouterr().err


class _FakeCamera:
    """cv2.VideoCapture of a camera that gives `frames` (BGR) and then stops."""

    def __init__(self, frames) -> None:
        self.frames = list(frames)

    def isOpened(self) -> bool:
        return True

    def read(self):
        return (True, self.frames.pop(0)[:, :, ::-1].copy()) if self.frames else (False, None)

    def release(self) -> None:
        pass


def test_camera_frames_are_queued_and_the_stream_flushed_when_it_ends(assets, monkeypatch):
    import cv2

    from inference.live import play_camera

    loaded = _loaded(assets)
    frames = _frames(assets, loaded)
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: _FakeCamera(frames))
    result = play_camera(0, StreamingRecognizer(loaded), queue_size=len(frames))
    assert result.arrived == result.processed == len(frames) and result.dropped == 0
    assert result.sentence == assets["sentence"]  # a camera that reads faster than real time
