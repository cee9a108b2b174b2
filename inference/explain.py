"""Grad-CAM of the recognised glosses of one video: maps per input frame, overlays, sheets.

For gloss k of the decoded sentence the target is the sum of its log-probability over the output
steps the CTC forced alignment gives it; the gradient of that target with respect to the chosen
backbone layer's output weights each channel per frame (Grad-CAM), and the ReLU of the weighted
sum, upsampled to the network input, is blended over every input frame.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from inference.align import Recognition, align_sentence, steps_to_frames
from inference.gradcam import GradCAM, contact_sheet, normalise_maps, overlay_heatmap, upsample_maps
from inference.loaded_model import LoadedModel
from inference.recognize import PreparedInput, decode_sentence
from utils.errors import ConfigError, UserError

DEFAULT_LAYER = "conv2d.layer4"


def select_glosses(spec: str, count: int) -> list[int]:
    """Positions chosen by a gloss spec ('all' or an index into the decoded sentence)."""
    if count == 0:
        raise UserError("the model recognised no gloss in this video: there is nothing to explain")
    if spec == "all":
        return list(range(count))
    try:
        index = int(spec)
    except ValueError:
        raise ConfigError(f"--gloss {spec!r}: use a position 0..{count - 1} or 'all'") from None
    if not 0 <= index < count:
        raise ConfigError(f"--gloss {index}: the decoded sentence has {count} glosses (0..{count - 1})")
    return [index]


def input_frames_rgb(prepared: PreparedInput) -> np.ndarray:
    """The real (unpadded) network input frames back as (T, H, W, 3) RGB uint8."""
    video = prepared.video[0, prepared.left_pad:prepared.left_pad + prepared.num_frames]
    rgb = ((video.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return rgb.permute(0, 2, 3, 1).cpu().numpy()


def gloss_target(rec: Recognition, position: int, logits: torch.Tensor) -> torch.Tensor:
    """Sum of the gloss's log-probability over the output steps aligned to it (differentiable)."""
    first, last = rec.step_spans[position]
    log_probs = logits[first:last + 1].float().log_softmax(-1)
    return log_probs[:, rec.class_indices[position]].sum()


@contextlib.contextmanager
def frozen(model: torch.nn.Module):
    """Parameters without gradients for the duration: Grad-CAM differentiates activations only."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def gloss_cams(loaded: LoadedModel, prepared: PreparedInput, layer: str = DEFAULT_LAYER,
               gloss_spec: str = "all") -> tuple[Recognition, dict[int, torch.Tensor]]:
    """Decode the video; per chosen gloss position, raw Grad-CAM maps (T, H, W) at input size."""
    if loaded.model is None:
        raise ConfigError(f"Grad-CAM needs the PyTorch checkpoint: {loaded.source.get('model')} is an "
                          f"exported graph without gradients; pass the .pt file it was exported from")
    device = loaded.device
    video = prepared.video.to(device)
    total = video.shape[1]
    # cuDNN's LSTM has no backward in eval mode: use the native kernels so BN stays in eval.
    no_cudnn = (torch.backends.cudnn.flags(enabled=False) if device.type == "cuda"
                else contextlib.nullcontext())
    maps: dict[int, torch.Tensor] = {}
    with GradCAM(loaded.model, layer) as cam, frozen(loaded.model), torch.enable_grad(), no_cudnn:
        ret = loaded.model(video, prepared.length.to(device))
        steps = int(ret["feat_len"][0])
        logits = ret["sequence_logits"][:steps, 0]
        glosses = decode_sentence(loaded, logits.detach().float().log_softmax(-1).cpu())
        rec = align_sentence(logits, glosses, loaded.gloss_dict)
        chosen = select_glosses(gloss_spec, len(glosses))
        for n, position in enumerate(chosen):
            per_frame = cam.maps(gloss_target(rec, position, logits), batch=1, frames=total,
                                 retain_graph=n + 1 < len(chosen))[0]
            # drop the frames the collate padding added: one map per real input frame
            per_frame = per_frame[prepared.left_pad:prepared.left_pad + prepared.num_frames]
            maps[position] = upsample_maps(per_frame, tuple(video.shape[-2:])).cpu()
    return rec, maps


def blend(frames: np.ndarray, raw: torch.Tensor, alpha: float = 0.45,
          per_frame_norm: bool = False) -> list[np.ndarray]:
    """Heat maps (T, H, W) scaled to [0, 1] and blended over the (T, H, W, 3) input frames."""
    heat = normalise_maps(raw, per_frame_norm).numpy()
    return [overlay_heatmap(frame, h, alpha) for frame, h in zip(frames, heat)]


def sheet_indices(num_frames: int, limit: int) -> list[int]:
    """Frames shown on the contact sheet: all, or `limit` spread uniformly."""
    if num_frames <= limit:
        return list(range(num_frames))
    return np.linspace(0, num_frames - 1, limit).round().astype(int).tolist()


def gloss_sheet(rec: Recognition, position: int, blended: Sequence[np.ndarray],
                prepared: PreparedInput, layer: str = DEFAULT_LAYER, max_frames: int = 32,
                columns: int = 8, tile_size: int = 112) -> np.ndarray:
    """Contact sheet of a gloss's overlays, the frames aligned to it framed; RGB uint8."""
    f0, f1 = steps_to_frames(*rec.step_spans[position], prepared.stride, prepared.num_frames)
    shown = sheet_indices(len(blended), max_frames)
    count = len(blended)
    shows = f"all {count} frames" if len(shown) == count else f"{len(shown)} of {count} frames"
    title = (f"#{position} {rec.glosses[position]}  frames {f0}-{f1}  ({shows} shown)  "
             f"layer {layer}")
    return contact_sheet([blended[i] for i in shown], [f"{i}" for i in shown], title,
                         [f0 <= i <= f1 for i in shown], columns, tile_size)


def safe_name(text: str) -> str:
    """A gloss turned into a file-name fragment."""
    return re.sub(r"[^\w\-]+", "_", text, flags=re.UNICODE).strip("_") or "gloss"


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB image with OpenCV, with an error naming the file."""
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"cannot encode {path}")
    path.write_bytes(data.tobytes())  # bytes, not cv2.imwrite: non-ASCII (Chinese) paths work


def gloss_map_names(position: int, gloss: str) -> tuple[str, str]:
    """The names write_gloss_maps gives a gloss's frame folder and contact sheet in its output folder."""
    stem = f"gloss{position:02d}_{safe_name(gloss)}"
    return stem, f"{stem}_sheet.png"


def write_gloss_maps(out_dir: Path, position: int, gloss: str, blended: Sequence[np.ndarray],
                     sheet: np.ndarray) -> tuple[Path, Path]:
    """One blended JPEG per input frame plus the contact sheet PNG; returns (frame folder, sheet)."""
    stem, sheet_name = gloss_map_names(position, gloss)
    folder = out_dir / stem
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("frame_*.jpg"):  # a previous, longer video must not leave frames behind
        stale.unlink()
    for i, image in enumerate(blended):
        write_image(folder / f"frame_{i:04d}.jpg", image)
    sheet_path = out_dir / sheet_name
    write_image(sheet_path, sheet)
    return folder, sheet_path
