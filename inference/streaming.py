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
from typing import Sequence

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
from utils.errors import UserError


class StreamingNeedsCheckpointError(UserError):
    """Streaming runs the network in pieces, which an exported graph does not offer."""


@dataclass(frozen=True)
class StreamSettings:
    """The window of the non-causal layers, in output steps, and the channel gate's pool, in frames."""

    context: int = 16  # output steps before the step being decided
    lookahead: int = 4  # output steps after it: the latency traded for accuracy
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


def _centre(layer: nn.Module, window: list[Tensor]) -> Tensor:
    """The centre output of a temporal layer run on an odd window of (1, C, H, W) frames: exactly
    what the offline layer computes there, since the window spans its receptive field."""
    return layer(torch.cat(window), 1)[len(window) // 2:len(window) // 2 + 1]


class StreamedFusion:
    """One SpatioTemporalFusion block (with its ResNet alpha) run frame by frame.

    Offline: out_t = x_t + alpha * (x_t + st(t)), st reading [x, c] at t-1..t+1 and c_s =
    CBAM(w0 * TConv3(x)_s + w1 * TConv5(x)_s) reading x at s-2..s+2: output t needs input t+3.
    """

    delay = 3  # frames of look-ahead

    def __init__(self, block: SpatioTemporalFusion, alpha: Tensor, gate_frames: int | None) -> None:
        self.block, self.alpha, self.gate_frames = block, alpha, gate_frames
        self.x: dict[int, Tensor] = {}
        self.c: dict[int, Tensor] = {}
        self.means: list[Tensor] = []  # per frame of the gate's pool: mean over (H, W) of each channel
        self.peaks: list[Tensor] = []
        self.received = self.next_c = self.next_out = 0
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

    def _frame(self, store: dict[int, Tensor], index: int, like: Tensor) -> Tensor:
        """A stored frame, or zeros outside the stream (the temporal convs' zero padding)."""
        return store[index] if index in store else torch.zeros_like(like)

    def _advance(self) -> list[Tensor]:
        """Compute every gated temporal frame and every output the frames received allow."""
        n = self.received
        while self.next_c < n and (self.ended or self.next_c + 2 < n):
            self.c[self.next_c] = self._gated_temporal(self.next_c)
            self.next_c += 1
        out = []
        while self.next_out < n and (self.next_out + 1 < self.next_c or (self.ended and self.next_c == n)):
            out.append(self._output(self.next_out))
            self.next_out += 1
        keep = min(self.next_out - 1, self.next_c - 2)
        for store in (self.x, self.c):
            for index in [i for i in store if i < keep]:
                del store[index]
        return out

    def _gated_temporal(self, s: int) -> Tensor:
        """CBAM(w0 * short_s + w1 * long_s), the channel gate pooling the last `gate_frames` frames."""
        block, like = self.block, self.x[s]
        window = [self._frame(self.x, i, like) for i in range(s - 2, s + 3)]
        short = _centre(block.t_conv[0], window[1:4])
        long = _centre(block.t_conv[1], window)
        temporal = block.fusion_weights[0] * short + block.fusion_weights[1] * long
        self.means.append(temporal.mean(dim=(2, 3)))
        self.peaks.append(temporal.amax(dim=(2, 3)))
        if self.gate_frames is not None and len(self.means) > self.gate_frames:
            del self.means[0], self.peaks[0]
        channel, spatial = block.cbam
        avg = torch.cat(self.means).mean(0)[None, :, None, None]
        peak = torch.cat(self.peaks).amax(0)[None, :, None, None]
        gate = torch.sigmoid(channel.fc(avg) + channel.fc(peak))
        return spatial(temporal * gate)

    def _output(self, t: int) -> Tensor:
        """x_t + alpha * (x_t + st(t))."""
        like = self.x[t]
        pairs = [torch.cat([self._frame(self.x, i, like), self._frame(self.c, i, like)], 1)
                 for i in range(t - 1, t + 2)]
        st = self.block.st_conv
        fused = _centre(st[0], pairs)
        for layer in st[1:]:
            fused = layer(fused)
        return like + self.alpha * (like + fused)


class StreamingBackbone:
    """The ResNet frame backbone fed one frame at a time: `push(frame)` returns the frame features
    (C,) that became complete, `end()` the rest. Per-frame stages run once per frame."""

    def __init__(self, resnet: ResNet, gate_frames: int | None) -> None:
        self.resnet = resnet
        self.gate_frames = gate_frames
        self.reset()

    @property
    def delay(self) -> int:
        """Frames of look-ahead: the fusion blocks'."""
        return len(self.blocks) * StreamedFusion.delay

    def reset(self) -> None:
        """Forget the stream."""
        r = self.resnet
        self.blocks = [StreamedFusion(block, r.alpha[i], self.gate_frames)
                       for i, block in enumerate((r.shift1, r.shift2, r.shift3))]

    def stem(self, frame: Tensor) -> Tensor:
        """The per-frame stages before the first fusion block: (1, 3, H, W) -> layer2's output."""
        r = self.resnet
        if r.channels_last is not False:
            frame = frame.contiguous(memory_format=torch.channels_last)
        return r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(frame))))))

    def push(self, stem: Tensor) -> list[Tensor]:
        """Feed one frame's stem output; frame features (C,) now complete."""
        return self._through([stem], ending=False)

    def end(self) -> list[Tensor]:
        """End the stream: the remaining frame features."""
        return self._through([], ending=True)

    def _through(self, frames: list[Tensor], ending: bool) -> list[Tensor]:
        r = self.resnet
        after = (r.layer3, r.layer4, lambda x: x.mean(dim=(2, 3))[0])
        for block, stage in zip(self.blocks, after):
            outs = [y for x in frames for y in block.push(x)]
            if ending:
                outs += block.end()
            frames = [stage(y) for y in outs]
        return frames


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

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        specs = list(model.conv1d.kernel_size)
        self.prefix = cached_prefix(specs)
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
        x = torch.stack(self.features, dim=1)[None]  # (1, C, n)
        for layer in self.model.conv1d.temporal_conv[:self.prefix]:
            x = layer(x)
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
        window = torch.stack(self.cached[first * self.rest_stride - self.offset:], dim=1)[None]
        feats, _, _ = self.model.conv1d.run_layers(window, self.prefix)
        visual = feats.permute(2, 0, 1)  # (T', 1, hidden)
        lengths = torch.tensor([visual.shape[0]])
        logits = self.model.classifier(self.model.temporal_model(visual, lengths))
        return logits[:, 0].float().log_softmax(-1)

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
        if loaded.model is None:
            raise StreamingNeedsCheckpointError(
                "streaming runs the network in pieces; pass the .pt checkpoint, not an exported graph")
        self.loaded, self.settings, self.fps = loaded, settings, fps
        self.model = loaded.model
        self.dtype = next(self.model.parameters()).dtype
        self.device = next(self.model.parameters()).device
        self.classes = {int(v[0]): g for g, v in loaded.gloss_dict.items()}
        self.transform = build_transform(False, loaded.input_size, loaded.image_scale)
        self.left_pad, self.stride = temporal_padding(loaded.kernel_sizes)
        self.backbone = StreamingBackbone(self.model.conv2d, settings.gate_frames)
        self.decoder = WindowDecoder(self.model)
        self.reset()

    # ---- the stream's state ------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the stream (nothing is committed)."""
        self.backbone.reset()
        self.decoder.reset()
        self.frames = 0  # frames pushed
        self.times: list[float] = []
        self.last_stem: Tensor | None = None
        self.committed_steps = 0
        self.run = _Run()

    def push(self, frame: np.ndarray, time: float | None = None) -> list[CommittedGloss]:
        """Add one frame (its timestamp in seconds; default its index / fps); glosses it commits."""
        with torch.inference_mode():
            stem = self.backbone.stem(self._prepare(frame))
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
        return out + (self._close_run() if final else [])

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
                               (run.first, run.last), (f0, f1), (self.times[f0], self.times[f1]),
                               self.frames - 1, self.times[-1], sum(run.probs) / len(run.probs))]
