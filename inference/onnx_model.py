"""ONNX export of the recognition network and its onnxruntime runner.

The graph is `inference.network.CTCLogProbs`: inputs `frames` (B, T, 3, H, W) float32 in [-1, 1]
(the feeder's test transform and padding, as inference.recognize.prepare_input makes them) and
`lengths` (B,) int64; outputs `log_probs` (B, T', C) float32 and `out_lengths` (B,) int64. Batch
and time are dynamic. `<name>.vocab.json` beside the graph holds the vocabulary (class index ->
gloss, 0 = CTC blank) and the input settings, so the pair runs without this repository.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from inference.loading import LoadedModel, vocab_name
from inference.network import CTCLogProbs
from inference.recognize import prepare_input
from preprocess.common import parse_resolution

OPSET = 17
INPUTS = ("frames", "lengths")
OUTPUTS = ("log_probs", "out_lengths")
FORMAT = "stfnet-onnx-1"


def vocab_path(onnx_path: str | os.PathLike) -> Path:
    """The metadata file written beside an exported graph: model.onnx -> model.vocab.json."""
    return Path(onnx_path).with_name(vocab_name(onnx_path))


def metadata(loaded: LoadedModel) -> dict[str, Any]:
    """What a runtime needs beside the graph: vocabulary, input settings, decoding."""
    glosses = {int(v[0]): g for g, v in loaded.gloss_dict.items()}
    return {"format": FORMAT, "blank": 0, "num_classes": loaded.num_classes,
            "glosses": [glosses.get(i, "") for i in range(loaded.num_classes)],
            "kernel_sizes": list(loaded.kernel_sizes), "input_size": loaded.input_size,
            "image_scale": loaded.image_scale,
            "frames_res": f"{loaded.frame_size[0]}x{loaded.frame_size[1]}px",
            "search_mode": loaded.search_mode, "beam_width": loaded.beam_width,
            "inputs": {"frames": "(B, T, 3, H, W) float32 RGB in [-1, 1]", "lengths": "(B,) int64"},
            "outputs": {"log_probs": "(B, T', C) float32", "out_lengths": "(B,) int64"}}


def export_onnx(loaded: LoadedModel, out: str | os.PathLike, frames: int = 64) -> Path:
    """Write the network of a loaded checkpoint as ONNX (dynamic batch and time) plus its vocabulary."""
    if loaded.model is None:
        raise ValueError("export needs a PyTorch checkpoint (.pt), not an ONNX file")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    net = CTCLogProbs(loaded.model).cpu().eval()
    width, height = loaded.frame_size
    prepared = prepare_input(np.zeros((frames, height, width, 3), np.uint8), loaded.kernel_sizes,
                             loaded.input_size, loaded.image_scale)
    example = (prepared.video, prepared.length)
    with warnings.catch_warnings():  # the tracer's notes on shape checks that the graph drops
        warnings.simplefilter("ignore")
        # The TorchScript-based exporter: it maps the packed BiLSTM to ONNX LSTM with per-sequence
        # lengths (torch.export cannot trace pack_padded_sequence with a dynamic batch).
        torch.onnx.export(net, example, str(out), dynamo=False, opset_version=OPSET,
                          input_names=list(INPUTS), output_names=list(OUTPUTS),
                          dynamic_axes={"frames": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                                        "log_probs": {0: "batch", 1: "steps"},
                                        "out_lengths": {0: "batch"}})
    vocab_path(out).write_text(json.dumps(metadata(loaded), ensure_ascii=False, indent=1) + "\n",
                               encoding="utf-8")
    return out


class OnnxRunner:
    """An onnxruntime session with CTCLogProbs's call: (video, lengths) -> (log_probs, lengths)."""

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeError(f"running {path} needs onnxruntime: pip install -r requirements.txt "
                               f"({exc})") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for damaged graphs
            raise RuntimeError(f"cannot load ONNX model {path}: {exc}") from exc

    def __call__(self, video: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Run the graph on CPU tensors; returns CPU tensors."""
        log_probs, out_lengths = self.session.run(
            list(OUTPUTS), {"frames": video.detach().cpu().float().numpy(),
                            "lengths": lengths.detach().cpu().long().numpy()})
        return torch.from_numpy(log_probs), torch.from_numpy(np.asarray(out_lengths, np.int64))


def load_onnx_model(path: str | os.PathLike, search_mode: str | None = None,
                    beam_width: int | None = None) -> LoadedModel:
    """An exported graph and the vocabulary file beside it as a LoadedModel (CPU, no Grad-CAM)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    meta_file = vocab_path(path)
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{meta_file} not found: export.py writes it beside {path.name}; "
                                f"keep the two files together") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {meta_file}: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_file} is not an STFNet export (format {meta.get('format')!r}, "
                         f"expected {FORMAT!r})")
    gloss_dict = {g: [i, 1] for i, g in enumerate(meta["glosses"]) if i != meta["blank"]}
    return LoadedModel(
        model=None, runner=OnnxRunner(path), gloss_dict=gloss_dict, num_classes=int(meta["num_classes"]),
        kernel_sizes=list(meta["kernel_sizes"]), input_size=int(meta["input_size"]),
        image_scale=float(meta["image_scale"]), frame_size=parse_resolution(meta["frames_res"]),
        search_mode=search_mode or meta["search_mode"], beam_width=int(beam_width or meta["beam_width"]),
        source={"vocabulary": str(meta_file), "architecture": str(path), "model": str(path)})
