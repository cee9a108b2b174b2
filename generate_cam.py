"""Grad-CAM heat maps for the glosses the model recognises in one video.

    python generate_cam.py --model_path work_dir/best.pt --video_path clip.mp4 --out cam/ [--gloss all]

For gloss k of the decoded sentence the target is the sum of its log-probability over the output
steps the CTC forced alignment gives it; the gradient of that target with respect to the chosen
backbone layer's output weights each channel per frame (Grad-CAM), and the ReLU of the weighted
sum, upsampled to the network input, is blended over every input frame.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from utils.decode import Decode
from utils.gradcam import GradCAM, contact_sheet, normalise_maps, overlay_heatmap, upsample_maps
from utils.inference import (LoadedModel, PreparedInput, Recognition, add_model_arguments,
                             align_sentence, load_model_and_video, steps_to_frames)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--layer", default="conv2d.layer4", help="backbone layer to explain")
    parser.add_argument("--gloss", default="all",
                        help="position of the gloss in the decoded sentence (0-based), or 'all'")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--alpha", type=float, default=0.45, help="heat map opacity")
    parser.add_argument("--per_frame_norm", action="store_true",
                        help="scale each frame's map to its own maximum (default: one scale "
                             "for the whole video, so frames keep their relative strength)")
    parser.add_argument("--sheet_frames", type=int, default=32,
                        help="frames shown on the contact sheet at most")
    parser.add_argument("--sheet_columns", type=int, default=8)
    parser.add_argument("--tile_size", type=int, default=112, help="contact sheet tile size in pixels")
    return parser


def select_glosses(spec: str, count: int) -> list[int]:
    """Positions chosen by --gloss ('all' or an index into the decoded sentence)."""
    if count == 0:
        raise ValueError("the model recognised no gloss in this video: there is nothing to explain")
    if spec == "all":
        return list(range(count))
    try:
        index = int(spec)
    except ValueError:
        raise ValueError(f"--gloss {spec!r}: use a position 0..{count - 1} or 'all'") from None
    if not 0 <= index < count:
        raise ValueError(f"--gloss {index}: the decoded sentence has {count} glosses (0..{count - 1})")
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


def safe_name(text: str) -> str:
    """A gloss turned into a file-name fragment."""
    return re.sub(r"[^\w\-]+", "_", text, flags=re.UNICODE).strip("_") or "gloss"


def sheet_indices(num_frames: int, limit: int) -> list[int]:
    """Frames shown on the contact sheet: all, or `limit` spread uniformly."""
    if num_frames <= limit:
        return list(range(num_frames))
    return np.linspace(0, num_frames - 1, limit).round().astype(int).tolist()


def write_gloss_maps(out_dir: Path, position: int, rec: Recognition, heat: np.ndarray,
                     frames: np.ndarray, prepared: PreparedInput,
                     args: argparse.Namespace) -> tuple[Path, Path]:
    """One blended JPEG per input frame plus the contact sheet PNG; returns (frame folder, sheet)."""
    gloss = rec.glosses[position]
    f0, f1 = steps_to_frames(*rec.step_spans[position], prepared.stride, prepared.num_frames)
    stem = f"gloss{position:02d}_{safe_name(gloss)}"
    folder = out_dir / stem
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("frame_*.jpg"):  # a previous, longer video must not leave frames behind
        stale.unlink()
    blended = [overlay_heatmap(frame, h, args.alpha) for frame, h in zip(frames, heat)]
    for i, image in enumerate(blended):
        path = folder / f"frame_{i:04d}.jpg"
        if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise RuntimeError(f"cannot write {path}")
    shown = sheet_indices(len(blended), args.sheet_frames)
    title = f"#{position} {gloss}  frames {f0}-{f1} of {prepared.num_frames}  layer {args.layer}"
    sheet = contact_sheet([blended[i] for i in shown], [f"{i}" for i in shown], title,
                          [f0 <= i <= f1 for i in shown], args.sheet_columns, args.tile_size)
    sheet_path = out_dir / f"{stem}_sheet.png"
    if not cv2.imwrite(str(sheet_path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise RuntimeError(f"cannot write {sheet_path}")
    return folder, sheet_path


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


def gloss_cams(loaded: LoadedModel, prepared: PreparedInput, layer: str, gloss_spec: str,
               search_mode: str, beam_width: int, device: torch.device
               ) -> tuple[Recognition, dict[int, torch.Tensor]]:
    """Decode the video; per chosen gloss position, raw Grad-CAM maps (T, H, W) at input size."""
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
        decoder = Decode(loaded.gloss_dict, loaded.num_classes, search_mode, beam_width=beam_width)
        glosses = [g for g, _ in decoder.decode(logits.detach()[None], [steps], batch_first=True)[0]]
        rec = align_sentence(logits, glosses, loaded.gloss_dict)
        chosen = select_glosses(gloss_spec, len(glosses))
        for n, position in enumerate(chosen):
            per_frame = cam.maps(gloss_target(rec, position, logits), batch=1, frames=total,
                                 retain_graph=n + 1 < len(chosen))[0]
            # drop the frames the collate padding added: one map per real input frame
            per_frame = per_frame[prepared.left_pad:prepared.left_pad + prepared.num_frames]
            maps[position] = upsample_maps(per_frame, tuple(video.shape[-2:])).cpu()
    return rec, maps


def generate(args: argparse.Namespace) -> list[dict]:
    """Compute and write the maps of the chosen glosses; returns what was written."""
    loaded, _clip, prepared, device = load_model_and_video(args)
    rec, maps = gloss_cams(loaded, prepared, args.layer, args.gloss, loaded.search_mode,
                           loaded.beam_width, device)
    frames = input_frames_rgb(prepared)
    written = []
    for position, raw in maps.items():
        heat = normalise_maps(raw, args.per_frame_norm).numpy()
        folder, sheet = write_gloss_maps(Path(args.out), position, rec, heat, frames, prepared, args)
        written.append({"position": position, "gloss": rec.glosses[position],
                        "frames_dir": str(folder), "sheet": str(sheet)})
    return written


def main(argv: list[str] | None = None) -> int:
    """Entry point: write the heat maps and print where they are."""
    args = build_parser().parse_args(argv)
    try:
        written = generate(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for item in written:
        print(f"gloss #{item['position']} {item['gloss']}: frames in {item['frames_dir']}/, "
              f"contact sheet {item['sheet']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
