"""ONNX export of the recognition network and its onnxruntime runner.

Two graphs, told apart by their first input's type:

- frames (the default, `inference.network.FramesToCTC`): input `frames` (T, H, W, 3) uint8 RGB,
  one decoded video at the frame size in `<name>.vocab.json` (`frames_res`); the graph does the
  test transform and the padding itself. Outputs `log_probs` (1, T', C) float32, `out_lengths`
  (1,) int64 and `ids` (1, T') int64, the best path (collapse repeats, drop 0 = blank: greedy).
- float (`inference.network.CTCLogProbs`): inputs `frames` (B, T, 3, H, W) float32 in [-1, 1],
  prepared as inference.recognize.prepare_input does, and `lengths` (B,) int64; outputs
  `log_probs` (B, T', C) and `out_lengths` (B,). Batch and time are dynamic.

`<name>.vocab.json` beside the graph holds the vocabulary (class index -> gloss, 0 = CTC blank)
and the input settings, so the pair runs without this repository (README: the twenty-line runner).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from dataset.collate import padded_length, temporal_padding
from dataset.layout import parse_resolution
from decoding.config import DecodeConfig
from inference.loaded_model import LoadedModel, vocab_name
from inference.network import CTCLogProbs, FramesToCTC, network_frame_size
from inference.video import VIDEO_EXTENSIONS, find_videos, load_frames
from utils.errors import BadFileError, ConfigError, MissingFileError, UserError

OPSET = 17
INPUT_KINDS = ("frames", "float")
IO_NAMES = {"frames": (("frames",), ("log_probs", "out_lengths", "ids")),
            "float": (("frames", "lengths"), ("log_probs", "out_lengths"))}
DYNAMIC_AXES = {"frames": {"frames": {0: "time"}, "log_probs": {1: "steps"}, "ids": {1: "steps"}},
                "float": {"frames": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                          "log_probs": {0: "batch", 1: "steps"}, "out_lengths": {0: "batch"}}}
IO_DOC = {"frames": {"inputs": {"frames": "(T, H, W, 3) uint8 RGB at frames_res"},
                     "outputs": {"log_probs": "(1, T', C) float32", "out_lengths": "(1,) int64",
                                 "ids": "(1, T') int64 best path (greedy before collapsing)"}},
          "float": {"inputs": {"frames": "(B, T, 3, H, W) float32 RGB in [-1, 1]",
                               "lengths": "(B,) int64"},
                    "outputs": {"log_probs": "(B, T', C) float32", "out_lengths": "(B,) int64"}}}
FORMAT = "stfnet-onnx-2"  # 2: decoding under "decode": {"mode", "beam_width"} (1 spelt "search_mode")
READABLE_FORMATS = ("stfnet-onnx-1", FORMAT)
# The TorchScript exporter has no shape rule for the packed BiLSTM's PackPadded / PadPacked and
# says so from C++; onnxruntime infers those shapes at load time, and the tests check the outputs.
EXPORTER_NOTE = re.compile(r"shape inference of prim::Pa\w+ type is missing")


def vocab_path(onnx_path: str | os.PathLike) -> Path:
    """The metadata file written beside an exported graph: model.onnx -> model.vocab.json."""
    return Path(onnx_path).with_name(vocab_name(onnx_path))


def metadata(loaded: LoadedModel, inputs: str = "frames") -> dict[str, Any]:
    """What a runtime needs beside the graph: vocabulary, input settings, decoding."""
    glosses = {int(v[0]): g for g, v in loaded.gloss_dict.items()}
    return {"format": FORMAT, "blank": 0, "num_classes": loaded.num_classes,
            "glosses": [glosses.get(i, "") for i in range(loaded.num_classes)],
            "kernel_sizes": list(loaded.kernel_sizes), "input_size": loaded.input_size,
            "image_scale": loaded.image_scale,
            "frames_res": f"{loaded.frame_size[0]}x{loaded.frame_size[1]}px",
            "decode": loaded.decode.onnx_metadata(), **IO_DOC[inputs]}


@contextlib.contextmanager
def exporter_notes_explained(note: re.Pattern = EXPORTER_NOTE) -> Iterator[None]:
    """Hold back C++ lines on stderr that match `note` (printed once, explained); others pass."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines()
            kept = [line for line in lines if not note.search(line)]
            if len(kept) < len(lines):
                kept.append(f"note: {len(lines) - len(kept)} exporter warnings 'shape inference of "
                            f"prim::PackPadded/PadPacked is missing' hidden: expected for the packed "
                            f"BiLSTM, whose shapes onnxruntime infers when it loads the graph")
            for line in kept:
                print(line, file=sys.stderr)


def example_input(loaded: LoadedModel, inputs: str, frames: int) -> tuple[Tensor, ...]:
    """A traced example of `frames` black frames for the graph `inputs` takes."""
    width, height = loaded.frame_size
    if inputs == "frames":
        return (torch.zeros(frames, height, width, 3, dtype=torch.uint8),)
    size = network_frame_size(loaded.frame_size, loaded.input_size, loaded.image_scale)
    total = padded_length(frames, *temporal_padding(loaded.kernel_sizes))
    return torch.zeros(1, total, 3, *size), torch.tensor([total])


def export_onnx(loaded: LoadedModel, out: str | os.PathLike, inputs: str = "frames",
                frames: int = 64, calibration: Sequence[np.ndarray] = ()) -> Path:
    """Write the network of a loaded checkpoint as ONNX plus its vocabulary; `inputs` is 'frames'
    (uint8 video in, preparation in the graph) or 'float' (prepared (B, T, 3, H, W) batches in).
    With `calibration` videos ((T, H, W, 3) uint8 at the frame size) the graph is int8."""
    if loaded.model is None:
        raise ConfigError("export needs a PyTorch checkpoint (.pt), not an ONNX file")
    if inputs not in INPUT_KINDS:
        raise ValueError(f"inputs must be one of {INPUT_KINDS}, got {inputs!r}")
    if calibration and inputs != "frames":
        raise ConfigError("--quantize int8 is calibrated on videos: it needs the frames graph "
                          "(drop --input float)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if calibration:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(loaded, Path(tmp) / "fp32.onnx", inputs, frames)
            quantize_int8(fp32, out, calibration)
        meta = {**metadata(loaded, inputs), "quantized": f"int8, calibrated on {len(calibration)} videos"}
        vocab_path(out).write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n",
                                   encoding="utf-8")
        return out
    net: nn.Module = FramesToCTC(loaded.model, loaded.kernel_sizes, loaded.frame_size,
                                 loaded.input_size, loaded.image_scale) if inputs == "frames" \
        else CTCLogProbs(loaded.model)
    names_in, names_out = IO_NAMES[inputs]
    with warnings.catch_warnings(), exporter_notes_explained():
        warnings.simplefilter("ignore")  # the tracer's notes on shape checks that the graph drops
        # The TorchScript-based exporter: it maps the packed BiLSTM to ONNX LSTM with per-sequence
        # lengths (torch.export cannot trace pack_padded_sequence with a dynamic batch).
        torch.onnx.export(net.cpu().eval(), example_input(loaded, inputs, frames), str(out),
                          dynamo=False, opset_version=OPSET, input_names=list(names_in),
                          output_names=list(names_out), dynamic_axes=DYNAMIC_AXES[inputs])
    vocab_path(out).write_text(json.dumps(metadata(loaded, inputs), ensure_ascii=False, indent=1)
                               + "\n", encoding="utf-8")
    return out


def calibration_hint(frame_size: tuple[int, int] | None = None) -> str:
    """Where each dataset's resized training videos are, for --calibration (the split's folder
    where the dataset has one, else all its videos)."""
    width, height = frame_size or (256, 256)
    return (f"the resized frames of the training split, e.g. <root>/features/fullFrame-{width}x{height}px/"
            f"train for PHOENIX-2014(-T); CSL and CSL-Daily have no split folders: "
            f"<root>/features/fullFrame-{width}x{height}px (CSL), <root>/sentence/frames_{width}x{height} "
            f"(CSL-Daily)")


def calibration_videos(root: str | os.PathLike, frame_size: tuple[int, int],
                       count: int = 8) -> list[np.ndarray]:
    """`count` videos spread evenly over the split at `root` (frame folders or video files), read
    at the model's `frame_size` (width, height): the int8 calibration set."""
    videos = find_videos(root)
    if not videos:
        raise MissingFileError(f"no videos (frame folders or {', '.join(VIDEO_EXTENSIONS)}) under "
                               f"{root}; pass {calibration_hint(frame_size)}")
    picks = sorted({round(i * (len(videos) - 1) / max(count - 1, 1)) for i in range(count)})
    return [load_frames(videos[i], size=frame_size).frames for i in picks]


def quantize_int8(fp32: Path, out: Path, calibration: Sequence[np.ndarray]) -> Path:
    """Static int8 quantization of a frames graph's convolutions and fully connected layers (QDQ:
    per-channel int8 weights, uint8 activations with min-max ranges over the `calibration`
    videos). The input preparation and the LSTM stay float."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    class Videos(CalibrationDataReader):
        def __init__(self) -> None:
            self.videos = iter(calibration)

        def get_next(self) -> dict | None:
            video = next(self.videos, None)
            return None if video is None else {"frames": np.ascontiguousarray(video, np.uint8)}

    prepared = fp32.with_name("prepared.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(out), Videos(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv", "Gemm"], per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


class OnnxRunner:
    """An onnxruntime session. Float graphs have CTCLogProbs's call, (video, lengths) ->
    (log_probs, lengths); frames graphs `run_frames(frames)` -> (log_probs, lengths)."""

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise UserError(f"running {path} needs onnxruntime: pip install -r requirements.txt "
                            f"({exc})") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for damaged graphs
            raise BadFileError(f"cannot load ONNX model {path}: {exc}") from exc
        self.path = str(path)
        self.takes_frames = self.session.get_inputs()[0].type == "tensor(uint8)"

    def __call__(self, video: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Run a float graph on CPU tensors; returns CPU tensors."""
        if self.takes_frames:
            raise ValueError(f"{self.path} takes decoded uint8 frames: use run_frames (or export "
                             f"with --input float for prepared batches)")
        log_probs, out_lengths = self.session.run(
            list(IO_NAMES["float"][1]), {"frames": video.detach().cpu().float().numpy(),
                                         "lengths": lengths.detach().cpu().long().numpy()})
        return torch.from_numpy(log_probs), torch.from_numpy(np.asarray(out_lengths, np.int64))

    def run_frames(self, frames: np.ndarray) -> tuple[Tensor, Tensor]:
        """Run a frames graph on (T, H, W, 3) uint8 RGB frames: (1, T', C) log-probs, (1,) lengths."""
        log_probs, out_lengths = self.session.run(["log_probs", "out_lengths"],
                                                  {"frames": np.ascontiguousarray(frames, np.uint8)})
        return torch.from_numpy(log_probs), torch.from_numpy(np.asarray(out_lengths, np.int64))


def read_metadata(meta_file: Path) -> dict[str, Any]:
    """The metadata an export wrote beside its graph(s), checked to be this project's."""
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingFileError(f"{meta_file} not found: export.py writes it beside the graph; "
                               f"keep the files together") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadFileError(f"cannot read {meta_file}: {exc}") from exc
    if meta.get("format") not in READABLE_FORMATS:
        raise BadFileError(f"{meta_file} is not an STFNet export (format {meta.get('format')!r}, "
                           f"expected {FORMAT!r})")
    return meta


def loaded_from_metadata(meta: Mapping[str, Any], runner: Any, decode: Mapping[str, Any] | None,
                         source: dict) -> LoadedModel:
    """A LoadedModel (CPU, no PyTorch module) of an export's metadata and its runner."""
    gloss_dict = {g: [i, 1] for i, g in enumerate(meta["glosses"]) if i != meta["blank"]}
    return LoadedModel(
        model=None, runner=runner, gloss_dict=gloss_dict, num_classes=int(meta["num_classes"]),
        kernel_sizes=list(meta["kernel_sizes"]), input_size=int(meta["input_size"]),
        image_scale=float(meta["image_scale"]), frame_size=parse_resolution(meta["frames_res"]),
        decode=DecodeConfig.from_onnx_metadata(meta).updated(decode or {}),
        source=source)


def load_onnx_model(path: str | os.PathLike, decode: Mapping[str, Any] | None = None) -> LoadedModel:
    """An exported graph and the vocabulary file beside it as a LoadedModel (CPU, no Grad-CAM).

    Decoding: the recipe's with the file's mode and beam width, then the `decode` keys given."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"ONNX model not found: {path}")
    meta_file = vocab_path(path)
    meta = read_metadata(meta_file)
    return loaded_from_metadata(meta, OnnxRunner(path), decode,
                                {"vocabulary": str(meta_file), "architecture": str(path), "model": str(path)})
