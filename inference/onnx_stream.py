"""The streaming recogniser's network pieces (inference.streaming.StreamPieces) as ONNX graphs.

`export.py --input stream --out DIR` writes one graph per piece and `DIR/stream.vocab.json`:

    stem.onnx         frame (1, 3, h, w) float32 in [-1, 1] -> layer2's output
    temporal{i}.onnx  window (5, C, H, W) -> temporal (1, C, H, W), mean (1, C), peak (1, C)
    output{i}.onnx    frames, temporal (3, C, H, W), avg, peak (3, C) -> the next stage's input
    cached.onnx       feats (1, C, n) -> (1, hidden, n - reach)
    head.onnx         window (1, hidden, m) -> log_probs (T', classes)

`test_one_video.py --model_path DIR --stream` (and `--camera`) runs them through the same
recogniser as a checkpoint; the recogniser's bookkeeping (buffers, the channel gate's pool, the
window, the commits) stays in inference/streaming.py.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from inference.loaded_model import LoadedModel
from inference.network import network_frame_size
from inference.onnx_model import (OPSET, OnnxRunner, exporter_notes_explained, loaded_from_metadata,
                                  metadata, read_metadata)
from inference.streaming import StreamPieces, cached_prefix
from utils.errors import ConfigError, UserError

META = "stream.vocab.json"


def is_stream_export(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder export.py --input stream wrote."""
    return (Path(path) / META).is_file()


def _export(piece: nn.Module, example: tuple[Tensor, ...], out: Path, inputs: list[str],
            outputs: list[str], dynamic: dict | None = None) -> tuple[Tensor, ...]:
    """Write one piece as ONNX; its outputs on `example` (the next piece's example)."""
    with warnings.catch_warnings(), exporter_notes_explained():
        warnings.simplefilter("ignore")  # the tracer's notes on shape checks the graph drops
        torch.onnx.export(piece, example, str(out), dynamo=False, opset_version=OPSET,
                          input_names=inputs, output_names=outputs, dynamic_axes=dynamic or {})
    with torch.no_grad():
        result = piece(*example)
    return result if isinstance(result, tuple) else (result,)


def export_stream(loaded: LoadedModel, out: str | os.PathLike) -> Path:
    """Write the pieces of a loaded checkpoint's network and their metadata into the folder `out`."""
    if loaded.model is None:
        raise ConfigError("export needs a PyTorch checkpoint (.pt), not an ONNX file")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pieces = StreamPieces(loaded.model.cpu().float().eval()).eval()
    height, width = network_frame_size(loaded.frame_size, loaded.input_size, loaded.image_scale)
    x, = _export(pieces.stem, (torch.zeros(1, 3, height, width),), out / "stem.onnx", ["frame"], ["out"])
    for i in range(3):
        temporal, mean, peak = _export(pieces.temporal[i], (x.repeat(5, 1, 1, 1),), out / f"temporal{i}.onnx",
                                       ["window"], ["temporal", "mean", "peak"])
        x, = _export(pieces.output[i], (x.repeat(3, 1, 1, 1), temporal.repeat(3, 1, 1, 1),
                                        mean.repeat(3, 1), peak.repeat(3, 1)),
                     out / f"output{i}.onnx", ["frames", "temporal", "avg", "peak"], ["out"])
    feats = x[:, :, None].repeat(1, 1, 40)
    cached, = _export(pieces.cached, (feats,), out / "cached.onnx", ["feats"], ["out"],
                      {"feats": {2: "frames"}, "out": {2: "outputs"}})
    _export(pieces.head, (cached,), out / "head.onnx", ["window"], ["log_probs"],
            {"window": {2: "frames"}, "log_probs": {0: "steps"}})
    meta = {key: value for key, value in metadata(loaded).items() if key not in ("inputs", "outputs")}
    meta["stream_pieces"] = __doc__.split("\n\n")[1].strip()
    (out / META).write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return out


class _Graph:
    """One piece's onnxruntime session, called with torch tensors as the PyTorch piece is."""

    def __init__(self, path: Path) -> None:
        runner = OnnxRunner(path)
        self.session = runner.session
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, *tensors: Tensor) -> Any:
        feeds = {name: t.detach().float().cpu().numpy() for name, t in zip(self.inputs, tensors)}
        outs = [torch.from_numpy(o) for o in self.session.run(None, feeds)]
        return outs[0] if len(outs) == 1 else tuple(outs)


class OnnxStreamPieces:
    """StreamPieces' interface over the exported graphs of a folder."""

    streams = True  # inference.streaming.StreamingRecognizer runs it as the PyTorch pieces

    def __init__(self, folder: Path, kernel_sizes: list[str]) -> None:
        self.folder = folder
        self.kernel_sizes = kernel_sizes
        self.prefix = cached_prefix(kernel_sizes)
        self.stem = _Graph(folder / "stem.onnx")
        self.temporal = [_Graph(folder / f"temporal{i}.onnx") for i in range(3)]
        self.output = [_Graph(folder / f"output{i}.onnx") for i in range(3)]
        self.cached = _Graph(folder / "cached.onnx")
        self.head = _Graph(folder / "head.onnx")

    def __call__(self, video: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        raise UserError(f"{self.folder} is a streaming export: run it with test_one_video.py "
                        f"--stream (or --camera); export without --input stream for whole videos")


def load_stream_export(folder: str | os.PathLike, decode: Mapping[str, Any] | None = None) -> LoadedModel:
    """A folder of export.py --input stream as a LoadedModel whose runner is its pieces."""
    folder = Path(folder)
    meta = read_metadata(folder / META)
    pieces = OnnxStreamPieces(folder, list(meta["kernel_sizes"]))
    return loaded_from_metadata(meta, pieces, decode, {"vocabulary": str(folder / META),
                                                       "architecture": str(folder), "model": str(folder)})
