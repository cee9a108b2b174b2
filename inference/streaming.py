"""Live recognition: frames go in one at a time, glosses come out once later frames cannot change them.

STF-Net sees whole sentences; this is what streams exactly and what is approximated:

- The frame backbone works per frame except for its three spatio-temporal fusion blocks
  (modules.fusion), whose temporal convolutions reach 2 frames (TConv5) and then 1 more (the
  fusion TConv3) to each side. `StreamingBackbone` runs each block frame by frame with exactly that
  context (3 frames of look-ahead per block, 9 in all), zero padding at the stream's start and end
  as offline. Their CBAM channel gate pools the mean and max of the whole clip, which a stream
  does not have yet: here it pools the last `gate_frames` frames (the backbone's one approximation).
- The temporal stack's convolutions before its first lift pool are unpadded and local: computed
  once per frame and cached (`WindowDecoder`), exact.
- The lift pools normalise over time (instance norm) and the BiLSTM is bidirectional: they run over
  a window of `context` output steps before and `lookahead` steps after the step being decided,
  recomputed once per new output step.
- An output step's best class is committed once it has `lookahead` steps of right context; a gloss
  is committed when its run of steps ends (the CTC best path: repeats collapse, blanks drop).

With `context` and `lookahead` at least the stream's length the result is offline best-path
recognition, up to the channel gate (tests/test_streaming.py checks both parts).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from dataset.collate import temporal_padding
from dataset.transforms import build_transform
from inference.align import steps_to_frames
from inference.loaded_model import LoadedModel
from inference.video import resize_frame
from modules.fusion import SpatioTemporalFusion
from modules.resnet import ResNet
from modules.tconv import output_lengths, runs_on
from slr_network import SLRModel
from utils.errors import ConfigError, UserError


class StreamingNeedsCheckpointError(UserError):
    """Streaming runs the network in pieces, which a whole-video graph does not offer."""


@dataclass(frozen=True)
class StreamSettings:
    """The window of the non-causal layers, in output steps, and the channel gate's pool, in frames."""

    # The defaults: the least look-ahead within 1 WER point of offline recognition on the demo
    # model's test split and on long streams of its videos (bench/streaming_accuracy.py,
    # docs/benchmarks.md: the grid context 8/16/32 x look-ahead 0/2/4/8).
    context: int = 8  # output steps before the step being decided
    lookahead: int = 8  # output steps after it: the latency traded for accuracy
    gate_frames: int | None = 64  # frames the fusion blocks' channel gate pools (None: all so far)

    def __post_init__(self) -> None:
        if self.context < 0 or self.lookahead < 0:
            raise ValueError(f"context and lookahead must be >= 0, got {self.context}, {self.lookahead}")
        if self.gate_frames is not None and self.gate_frames < 1:
            raise ValueError(f"gate_frames must be >= 1 or None, got {self.gate_frames}")


@dataclass(frozen=True)
class CommittedGloss:
    """A gloss once committed: its class, span (output steps, stream frames, seconds) and when."""

    gloss: str
    class_index: int
    steps: tuple[int, int]  # first, last output step
    frames: tuple[int, int]  # first, last frame of the stream (counting the frames pushed)
    times: tuple[float, float]  # timestamps of those frames, seconds
    committed_frame: int  # the frame whose arrival committed it (the last frame at a flush)
    committed_time: float
    score: float  # mean probability of the gloss over its steps

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {"gloss": self.gloss, "class_index": self.class_index, "steps": list(self.steps),
                "frames": list(self.frames), "times": [round(t, 4) for t in self.times],
                "committed_frame": self.committed_frame,
                "committed_time": round(self.committed_time, 4), "score": round(self.score, 6)}


class FrameStem(nn.Module):
    """The backbone's per-frame stages before its first fusion block: (1, 3, H, W) -> layer2's output."""

    def __init__(self, resnet: ResNet) -> None:
        super().__init__()
        self.resnet = resnet

    def forward(self, frame: Tensor) -> Tensor:
        r = self.resnet
        if r.channels_last is not False:
            frame = frame.contiguous(memory_format=torch.channels_last)
        return r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(frame))))))


class FusionTemporal(nn.Module):
    """Frames s-2..s+2 (5, C, H, W) -> the fused temporal frame s, w0 * TConv3 + w1 * TConv5 (1, C,
    H, W), with its channel mean and max over (H, W) (1, C): the window spans both receptive fields,
    so its centre is exactly what the offline block computes there."""

    def __init__(self, block: SpatioTemporalFusion) -> None:
        super().__init__()
        self.block = block

    def forward(self, window: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b = self.block
        short = b.t_conv[0](window[1:4], 1)[1:2]
        long = b.t_conv[1](window, 1)[2:3]
        temporal = b.fusion_weights[0] * short + b.fusion_weights[1] * long
        return temporal, temporal.mean(dim=(2, 3)), temporal.amax(dim=(2, 3))


class FusionOutput(nn.Module):
    """Frames t-1..t+1 (3, C, H, W), their temporal frames and the channel gate's pooled mean and max
    for each (3, C) -> `after`(x_t + alpha * (x_t + st(t))): the block's output for frame t, taken
    through the per-frame stage that follows it (zeros stand for frames outside the stream)."""

    def __init__(self, block: SpatioTemporalFusion, resnet: ResNet, index: int, after: nn.Module) -> None:
        super().__init__()
        self.block, self.resnet, self.index, self.after = block, resnet, index, after

    def forward(self, frames: Tensor, temporal: Tensor, avg: Tensor, peak: Tensor) -> Tensor:
        channel, spatial = self.block.cbam
        gate = torch.sigmoid(channel.fc(avg[:, :, None, None]) + channel.fc(peak[:, :, None, None]))
        gated = spatial(temporal * gate)  # zero for a zero (missing) frame, as offline padding
        st = self.block.st_conv
        fused = st[0](torch.cat([frames, gated], 1), 1)[1:2]
        for layer in st[1:]:
            fused = layer(fused)
        x = frames[1:2]
        return self.after(x + self.resnet.alpha[self.index] * (x + fused))


class FramePool(nn.Module):
    """(1, C, H, W) -> (1, C): the backbone's global average."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))


class CachedConvs(nn.Module):
    """(1, C, n) frame features -> (1, hidden, n - reach): the temporal stack's leading local convs."""

    def __init__(self, tconv: nn.Module, prefix: int) -> None:
        super().__init__()
        self.layers = tconv.temporal_conv[:prefix]

    def forward(self, feats: Tensor) -> Tensor:
        for layer in self.layers:
            feats = layer(feats)
        return feats


class WindowHead(nn.Module):
    """(1, hidden, m) cached outputs -> (T', classes) log-probabilities: the rest of the temporal
    stack, the BiLSTM and the classifier over one window."""

    def __init__(self, model: nn.Module, prefix: int) -> None:
        super().__init__()
        self.model, self.prefix = model, prefix

    def forward(self, window: Tensor) -> Tensor:
        feats, _, _ = self.model.conv1d.run_layers(window, self.prefix)
        # One whole sequence: the LSTM itself, as BiLSTMLayer runs it packed (no padding to hide),
        # which exports as a plain ONNX LSTM.
        sequence, _ = self.model.temporal_model.rnn(feats.permute(2, 0, 1))  # (T', 1, hidden)
        return self.model.classifier(sequence)[:, 0].float().log_softmax(-1)


class StreamPieces(nn.Module):
    """The network cut where the stream's state lives: what inference.streaming calls, in PyTorch
    here and as ONNX graphs in inference.onnx_stream (the same call signatures)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        r = model.conv2d
        blocks = (r.shift1, r.shift2, r.shift3)
        self.kernel_sizes = list(model.conv1d.kernel_size)
        self.prefix = cached_prefix(self.kernel_sizes)
        self.stem = FrameStem(r)
        self.temporal = nn.ModuleList(FusionTemporal(b) for b in blocks)
        self.output = nn.ModuleList(FusionOutput(b, r, i, after)
                                    for i, (b, after) in enumerate(zip(blocks, (r.layer3, r.layer4, FramePool()))))
        self.cached = CachedConvs(model.conv1d, self.prefix)
        self.head = WindowHead(model, self.prefix)


class StreamedFusion:
    """One SpatioTemporalFusion block run frame by frame, with the per-frame stage after it.

    Offline: out_t = x_t + alpha * (x_t + st(t)), st reading [x, c] at t-1..t+1 and c_s =
    CBAM(w0 * TConv3(x)_s + w1 * TConv5(x)_s) reading x at s-2..s+2: output t needs input t+3.
    """

    delay = 3  # frames of look-ahead

    def __init__(self, temporal: Callable, output: Callable, gate_frames: int | None) -> None:
        self.temporal, self.output, self.gate_frames = temporal, output, gate_frames
        self.x: dict[int, Tensor] = {}
        self.t: dict[int, Tensor] = {}  # fused temporal frames
        self.avg: dict[int, Tensor] = {}  # the channel gate's pooled mean and max for each of them
        self.peak: dict[int, Tensor] = {}
        self.means: list[Tensor] = []  # per frame of the gate's pool: mean over (H, W) of each channel
        self.peaks: list[Tensor] = []
        self.received = self.next_t = self.next_out = 0
        self.ended = False

    def push(self, x: Tensor) -> list[Tensor]:
        """Take frame `received` (1, C, H, W); return the outputs now complete."""
        self.x[self.received] = x
        self.received += 1
        return self._advance()

    def end(self) -> list[Tensor]:
        """The stream ended: zeros stand for the frames after it (the offline padding)."""
        self.ended = True
        return self._advance()

    def _window(self, store: dict[int, Tensor], first: int, last: int, like: Tensor) -> Tensor:
        """Frames first..last stacked, zeros outside the stream (the temporal convs' padding)."""
        return torch.cat([store[i] if i in store else torch.zeros_like(like) for i in range(first, last + 1)])

    def _advance(self) -> list[Tensor]:
        """Compute every temporal frame and every output the frames received allow."""
        n = self.received
        while self.next_t < n and (self.ended or self.next_t + 2 < n):
            self._temporal(self.next_t)
            self.next_t += 1
        out = []
        while self.next_out < n and (self.next_out + 1 < self.next_t or (self.ended and self.next_t == n)):
            t, like = self.next_out, self.x[self.next_out]
            out.append(self.output(self._window(self.x, t - 1, t + 1, like),
                                   self._window(self.t, t - 1, t + 1, like),
                                   self._window(self.avg, t - 1, t + 1, self.avg[t]),
                                   self._window(self.peak, t - 1, t + 1, self.peak[t])))
            self.next_out += 1
        keep = min(self.next_out - 1, self.next_t - 2)
        for store in (self.x, self.t, self.avg, self.peak):
            for index in [i for i in store if i < keep]:
                del store[index]
        return out

    def _temporal(self, s: int) -> None:
        """Temporal frame s and the gate's pool over the last `gate_frames` temporal frames."""
        self.t[s], mean, peak = self.temporal(self._window(self.x, s - 2, s + 2, self.x[s]))
        self.means.append(mean)
        self.peaks.append(peak)
        if self.gate_frames is not None and len(self.means) > self.gate_frames:
            del self.means[0], self.peaks[0]
        self.avg[s] = torch.cat(self.means).mean(0, keepdim=True)
        self.peak[s] = torch.cat(self.peaks).amax(0, keepdim=True)


class StreamingBackbone:
    """The ResNet frame backbone fed one frame at a time: `push(stem output)` returns the frame
    features (C,) that became complete, `end()` the rest. Per-frame stages run once per frame."""

    def __init__(self, pieces: StreamPieces, gate_frames: int | None) -> None:
        self.pieces = pieces
        self.gate_frames = gate_frames
        self.reset()

    @property
    def delay(self) -> int:
        """Frames of look-ahead: the fusion blocks'."""
        return len(self.blocks) * StreamedFusion.delay

    def reset(self) -> None:
        """Forget the stream."""
        p = self.pieces
        self.blocks = [StreamedFusion(p.temporal[i], p.output[i], self.gate_frames) for i in range(3)]

    def push(self, stem: Tensor) -> list[Tensor]:
        """Feed one frame's stem output; frame features (C,) now complete."""
        return self._through([stem], ending=False)

    def end(self) -> list[Tensor]:
        """End the stream: the remaining frame features."""
        return self._through([], ending=True)

    def _through(self, frames: list[Tensor], ending: bool) -> list[Tensor]:
        for block in self.blocks:
            frames = [y for x in frames for y in block.push(x)] + (block.end() if ending else [])
        return [f[0] for f in frames]


def cached_prefix(kernel_sizes: Sequence[str]) -> int:
    """How many leading layers of the temporal stack are local (unpadded convs before any pool)."""
    count = 0
    for spec in kernel_sizes:
        if spec[0] != "K":
            break
        count += 1
    return count


class WindowDecoder:
    """Frame features -> CTC log-probabilities of output steps, over a window of recent context.

    The stack's leading local convs run once per frame (their outputs cached: `cached`); the rest
    of the stack, the BiLSTM and the classifier run on a window of the cache.
    """

    def __init__(self, pieces: StreamPieces) -> None:
        self.pieces = pieces
        specs = list(pieces.kernel_sizes)
        self.prefix = pieces.prefix
        self.rest = specs[self.prefix:]
        self.rest_stride = math.prod(int(s[1:]) for s in self.rest if s[0] == "P")
        self.prefix_reach = sum(int(s[1:]) - 1 for s in specs[:self.prefix])
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        self.features: list[Tensor] = []  # frame features not yet through the cached layers
        self.cached: list[Tensor] = []  # outputs of the cached layers, (hidden,) each
        self.offset = 0  # global index of cached[0]
        self.count = 0  # cached outputs made so far

    def add(self, features: list[Tensor]) -> None:
        """Append frame features and run the cached layers on every complete window of them."""
        self.features += features
        if len(self.features) <= self.prefix_reach:
            return
        x = self.pieces.cached(torch.stack(self.features, dim=1)[None])  # (1, C, n) in
        self.cached += list(x[0].unbind(1))
        self.count += x.shape[2]
        del self.features[:x.shape[2]]

    def steps_ready(self) -> int:
        """Output steps computable from the cache (before the stream's end: with the window's edge)."""
        return max(0, int(output_lengths(torch.tensor(self.count), self.rest)))

    def runs(self, first: int) -> bool:
        """Whether a window from step `first` to the cache's end is long enough for the stack."""
        return runs_on(self.count - first * self.rest_stride, self.rest)

    def log_probs(self, first: int) -> Tensor:
        """(steps, classes) log-probabilities of steps first..steps_ready()-1, from a window of the
        cache starting at step `first`."""
        return self.pieces.head(torch.stack(self.cached[first * self.rest_stride - self.offset:], dim=1)[None])

    def first_kept_step(self) -> int:
        """The earliest step a window can still start at."""
        return -(-self.offset // self.rest_stride)

    def forget_before(self, step: int) -> None:
        """Drop the cache before output step `step` (no window starts earlier any more)."""
        drop = step * self.rest_stride - self.offset
        if drop > 0:
            del self.cached[:drop]
            self.offset += drop


@dataclass
class _Run:
    """The current run of equal best classes (the CTC path being collapsed)."""

    label: int = 0
    first: int = 0
    last: int = -1
    probs: list[float] = field(default_factory=list)


class StreamingRecognizer:
    """`push(frame, time)` -> glosses committed by that frame; `flush()` ends the stream and commits
    the rest; `reset()` forgets the stream. Frames are (H, W, 3) uint8 RGB of any size."""

    def __init__(self, loaded: LoadedModel, settings: StreamSettings = StreamSettings(),
                 fps: float = 25.0) -> None:
        self.loaded, self.settings, self.fps = loaded, settings, fps
        if loaded.model is not None and not isinstance(loaded.model, SLRModel):
            raise ConfigError(f"streaming runs STF-Net's pieces (its fusion blocks and lift pools); "
                              f"a {type(loaded.model).__name__} recognises whole videos: drop --stream")
        if loaded.model is not None:
            self.pieces = StreamPieces(loaded.model).eval()
            self.dtype = next(loaded.model.parameters()).dtype
            self.device = next(loaded.model.parameters()).device
        elif getattr(loaded.runner, "streams", False):  # inference.onnx_stream.OnnxStreamPieces
            self.pieces, self.dtype, self.device = loaded.runner, torch.float32, torch.device("cpu")
        else:
            raise StreamingNeedsCheckpointError(
                "streaming runs the network in pieces: pass the .pt checkpoint, or an export of "
                "them (export.py --input stream), not a whole-video graph")
        self.classes = {int(v[0]): g for g, v in loaded.gloss_dict.items()}
        self.transform = build_transform(False, loaded.input_size, loaded.image_scale)
        self.left_pad, self.stride = temporal_padding(loaded.kernel_sizes)
        self.backbone = StreamingBackbone(self.pieces, settings.gate_frames)
        self.decoder = WindowDecoder(self.pieces)
        self.reset()

    # ---- the stream's state ------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the stream (nothing is committed)."""
        self.backbone.reset()
        self.decoder.reset()
        self.frames = 0  # frames pushed
        self.times: list[float] = []  # timestamps of frames times_from.. (older ones dropped)
        self.times_from = 0
        self.last_stem: Tensor | None = None
        self.committed_steps = 0
        self.run = _Run()

    def push(self, frame: np.ndarray, time: float | None = None) -> list[CommittedGloss]:
        """Add one frame (its timestamp in seconds; default its index / fps); glosses it commits."""
        with torch.inference_mode():
            stem = self.pieces.stem(self._prepare(frame))
            self.times.append(self.frames / self.fps if time is None else float(time))
            self.frames += 1
            copies = 1 + (self.left_pad if self.last_stem is None else 0)  # the feeder's left padding
            self.last_stem = stem
            for _ in range(copies):
                self.decoder.add(self.backbone.push(stem))
            return self._commit(final=False)

    def flush(self) -> list[CommittedGloss]:
        """End the stream: pad it as the feeder pads a clip, commit every remaining gloss, reset."""
        out: list[CommittedGloss] = []
        if self.last_stem is not None:
            with torch.inference_mode():
                for _ in range((-self.frames) % self.stride + self.left_pad):  # right padding
                    self.decoder.add(self.backbone.push(self.last_stem))
                self.decoder.add(self.backbone.end())
                out = self._commit(final=True)
        self.reset()
        return out

    # ---- what the model imposes ----------------------------------------------------------------

    def lookahead_frames(self) -> int:
        """Frames that must arrive after an output step's last frame before the step is committed."""
        step = 1000  # far from the stream's start
        need = step + self.settings.lookahead + 1  # steps the window must reach
        cached = next(n for n in range(need * self.decoder.rest_stride, 10 ** 7)
                      if output_lengths(torch.tensor(n), self.decoder.rest) >= need)
        padded = cached - 1 + self.decoder.prefix_reach + self.backbone.delay
        return padded - self.left_pad - ((step + 1) * self.stride - 1)

    def gloss_lookahead_frames(self) -> int:
        """Frames after a gloss's last frame before it is committed: one step more than a step's (the
        step after the gloss must show that it ended)."""
        return self.lookahead_frames() + self.stride

    def held_bytes(self) -> int:
        """Bytes of the tensors the stream's state holds: the fusion blocks' frames and gate
        statistics, the last frame's stem output and the decoder's cache (bounded by the settings)."""
        tensors = [] if self.last_stem is None else [self.last_stem]
        for block in self.backbone.blocks:
            tensors += [*block.x.values(), *block.t.values(), *block.avg.values(),
                        *block.peak.values(), *block.means, *block.peaks]
        tensors += self.decoder.features + self.decoder.cached
        return sum(t.numel() * t.element_size() for t in tensors)

    # ---- internals -----------------------------------------------------------------------------

    def _prepare(self, frame: np.ndarray) -> Tensor:
        """(1, 3, h, w) network input of one frame: resized as preprocessing does, then the test
        transform (centre crop, rescale, [-1, 1])."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"a frame must be (H, W, 3) uint8 RGB, got {frame.dtype} {frame.shape}")
        image = resize_frame(frame, self.loaded.frame_size)[None]
        return self.transform(image).to(self.device, self.dtype)

    def _commit(self, final: bool) -> list[CommittedGloss]:
        """Commit the steps that have `lookahead` steps of right context (all at the end)."""
        ready = self.decoder.steps_ready()
        upto = ready if final else ready - self.settings.lookahead
        if upto <= self.committed_steps:
            return self._close_run() if final else []
        first = max(0, self.committed_steps - self.settings.context)
        while first > self.decoder.first_kept_step() and not self.decoder.runs(first):
            first -= 1  # a window too short for the lift pools: widen it to the left
        if not self.decoder.runs(first):  # a stream too short for the model: nothing to say
            return []
        log_probs = self.decoder.log_probs(first)
        out = []
        for step in range(self.committed_steps, upto):
            out += self._step(step, log_probs[step - first])
        self.committed_steps = upto
        self.decoder.forget_before(max(0, upto - self.settings.context - 1))
        out += self._close_run() if final else []
        start = self.run.first if self.run.label != 0 else self.committed_steps  # no gloss starts earlier
        first_frame = start * self.stride
        if first_frame > self.times_from:
            del self.times[:first_frame - self.times_from]
            self.times_from = first_frame
        return out

    def _step(self, step: int, log_probs: Tensor) -> list[CommittedGloss]:
        """Add a committed step's best class to the best path; the gloss it ends, if any."""
        label = int(log_probs.argmax())
        ended = self._close_run() if label != self.run.label else []
        if label != self.run.label:
            self.run = _Run(label, step)
        self.run.last = step
        self.run.probs.append(float(log_probs[label].exp()))
        return ended

    def _close_run(self) -> list[CommittedGloss]:
        """The current run as a gloss (none for a blank run)."""
        run, self.run = self.run, _Run()
        if run.label == 0 or run.last < run.first:
            return []
        f0, f1 = steps_to_frames(run.first, run.last, self.stride, self.frames)
        return [CommittedGloss(self.classes.get(run.label, f"<{run.label}>"), run.label,
                               (run.first, run.last), (f0, f1),
                               (self.times[f0 - self.times_from], self.times[f1 - self.times_from]),
                               self.frames - 1, self.times[-1], sum(run.probs) / len(run.probs))]
