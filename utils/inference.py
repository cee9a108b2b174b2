"""Shared pieces of test_one_video.py and generate_cam.py: checkpoint -> model, frames -> input,
and the CTC alignment that maps each recognised gloss back to the input frames.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from dataset.vocabulary import check_gloss_dict, load_gloss_dict
from preprocess.common import parse_resolution
from utils.checkpoint import load_checkpoint, model_state_from_checkpoint, shape_mismatches
from utils.device import select_device
from utils.video_io import VideoClip, check_source, load_frames

LANGUAGE_DATASETS = {"phoenix": "phoenix2014", "phoenix2014": "phoenix2014",
                     "phoenix2014-T": "phoenix2014-T", "csl-daily": "CSL-Daily", "csl": "CSL-Daily"}


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the dictionary or the architecture options."""


@dataclass(frozen=True)
class ArchOptions:
    """Architecture of a published checkpoint (which carries only its weights)."""

    c2d_type: str = "resnet34"
    conv_type: int = 2
    use_bn: bool = True
    hidden_size: int = 1024
    weight_norm: bool = True
    share_classifier: bool = True
    hsa_attention: bool = True
    base_width: int = 64
    aux_dim: int = 1000

    def model_args(self) -> dict:
        """SLRModel keyword arguments for these options."""
        return {"c2d_type": self.c2d_type, "conv_type": self.conv_type, "use_bn": self.use_bn,
                "hidden_size": self.hidden_size, "weight_norm": self.weight_norm,
                "share_classifier": self.share_classifier, "hsa_attention": self.hsa_attention,
                "base_width": self.base_width, "aux_dim": self.aux_dim}


@dataclass
class LoadedModel:
    """A ready-to-run model with its vocabulary and the input settings it was trained with."""

    model: nn.Module
    gloss_dict: dict
    num_classes: int
    model_args: dict
    input_size: int = 224
    image_scale: float = 1.0
    frame_size: tuple[int, int] = (256, 256)  # (width, height) the training frames were resized to
    search_mode: str = "beam"
    beam_width: int = 10
    source: dict = field(default_factory=dict)  # where architecture / vocabulary came from


def default_dict_path(language: str) -> Path:
    """Where preprocessing writes the gloss dictionary of the dataset behind `language`."""
    try:
        dataset = LANGUAGE_DATASETS[language]
    except KeyError:
        raise ValueError(f"unknown language {language!r}; use one of "
                         f"{sorted(set(LANGUAGE_DATASETS))}") from None
    return Path("preprocess") / dataset / "gloss_dict.npy"


def classifier_num_classes(state: Mapping[str, Tensor], hidden_size: int) -> int | None:
    """Class count of the checkpoint's classifier (NormLinear stores (in, out), Linear (out, in))."""
    weight = state.get("classifier.weight")
    if weight is None or weight.dim() != 2:
        return None
    rows, cols = weight.shape
    if rows == hidden_size:
        return int(cols)  # NormLinear: (hidden, classes); also right when classes == hidden
    if cols == hidden_size:
        return int(rows)
    return None


def check_vocabulary(num_classes: int, gloss_dict: Mapping, ckpt_path: str, dict_source: str) -> None:
    """The classifier must have one output per gloss plus the blank."""
    if num_classes != len(gloss_dict) + 1:
        raise CheckpointMismatchError(
            f"checkpoint {ckpt_path} has a classifier of {num_classes} classes but the dictionary "
            f"{dict_source} has {len(gloss_dict)} glosses (+1 blank = {len(gloss_dict) + 1}); pass the "
            f"gloss_dict.npy the model was trained with (--dict_path, or --language for the default)")


def _import_model_class() -> type:
    """slr_network.SLRModel, imported late so the CLI's --help works without the model code."""
    from slr_network import SLRModel

    return SLRModel


def resolve_vocabulary(ckpt: Mapping[str, Any], ckpt_path: str, dict_path: str | None,
                       language: str) -> tuple[dict, str]:
    """(gloss_dict, where it came from): --dict_path, else the checkpoint's, else preprocess/."""
    if dict_path is not None:
        return load_gloss_dict(dict_path, hint="check --dict_path"), str(dict_path)
    if isinstance(ckpt.get("gloss_dict"), Mapping):
        source = f"{ckpt_path}['gloss_dict']"
        return check_gloss_dict(ckpt["gloss_dict"], source), source
    path = default_dict_path(language)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_path} carries no vocabulary and {path} does not "
                                f"exist; pass --dict_path <gloss_dict.npy of the training data>")
    return load_gloss_dict(path), str(path)


def resolve_model_args(ckpt: Mapping[str, Any], ckpt_path: str, arch: ArchOptions | None
                       ) -> tuple[dict, str]:
    """(SLRModel kwargs without num_classes / gloss_dict, where they came from)."""
    saved = ckpt.get("model_args")
    if isinstance(saved, Mapping):
        args = {k: v for k, v in saved.items() if k not in ("gloss_dict", "num_classes")}
        source = f"{ckpt_path}['model_args']"
    else:
        args, source = (arch or ArchOptions()).model_args(), "command-line options"
    args["pretrained"] = None  # weights come from the checkpoint; never fetch anything
    return args, source


def checkpoint_num_classes(ckpt: Mapping[str, Any], state: Mapping[str, Tensor], hidden: int,
                           ckpt_path: str, arch_source: str) -> int:
    """Class count of the checkpoint's classifier, with an error when it does not fit `hidden`."""
    num_classes = classifier_num_classes(state, hidden)
    saved = ckpt.get("model_args")
    if num_classes is None and isinstance(saved, Mapping) and "num_classes" in saved:
        num_classes = int(saved["num_classes"])
    if num_classes is None:
        found = tuple(state["classifier.weight"].shape) if "classifier.weight" in state else "absent"
        raise CheckpointMismatchError(
            f"checkpoint {ckpt_path} does not fit the model built from {arch_source}: its "
            f"classifier.weight ({found}) does not match hidden_size {hidden}; pass the architecture "
            f"it was trained with (--hidden_size, --backbone, --base_width, ...) or check that it is "
            f"an STF-Net model")
    return num_classes


def _first(*values: Any) -> Any:
    """The first value that is not None."""
    return next(v for v in values if v is not None)


def build_model(ckpt_path: str | os.PathLike, device: torch.device, *, dict_path: str | None = None,
                language: str = "phoenix", arch: ArchOptions | None = None,
                input_size: int | None = None, image_scale: float | None = None,
                frames_res: str | None = None, search_mode: str | None = None,
                beam_width: int | None = None, unsafe_load: bool = False) -> LoadedModel:
    """Load a checkpoint (this project's, or a published weights-only one) as an eval-mode SLRModel.

    Explicit options win; then what the checkpoint carries (model_args, config, gloss_dict); then
    the published models' settings (ResNet34, 256x256 frames, 224 crop, beam search of width 10).
    """
    ckpt_path = str(ckpt_path)
    ckpt = load_checkpoint(ckpt_path, map_location="cpu", unsafe=unsafe_load)
    state = model_state_from_checkpoint(ckpt)
    gloss_dict, vocab_source = resolve_vocabulary(ckpt, ckpt_path, dict_path, language)
    model_args, arch_source = resolve_model_args(ckpt, ckpt_path, arch)
    num_classes = checkpoint_num_classes(ckpt, state, int(model_args.get("hidden_size", 1024)),
                                         ckpt_path, arch_source)
    check_vocabulary(num_classes, gloss_dict, ckpt_path, vocab_source)
    # How the model was evaluated in training: model_args keys, not constructor options here.
    saved_mode, saved_width = model_args.pop("search_mode", None), model_args.pop("beam_width", None)

    # No gloss_dict: the model then skips its own decoding; the scripts decode with utils.decode.
    model = _import_model_class()(num_classes=num_classes, gloss_dict=None, **model_args)
    load_state_strict(model, state, ckpt_path, arch_source)
    model.to(device).eval()

    config = ckpt.get("config") if isinstance(ckpt.get("config"), Mapping) else {}
    feeder_args = config.get("feeder_args") or {}
    return LoadedModel(
        model=model, gloss_dict=gloss_dict, num_classes=num_classes, model_args=model_args,
        input_size=int(_first(input_size, feeder_args.get("input_size"), 224)),
        image_scale=float(_first(image_scale, feeder_args.get("image_scale"), 1.0)),
        frame_size=parse_resolution(_first(frames_res, feeder_args.get("frames_res"), "256x256px")),
        search_mode=str(_first(search_mode, saved_mode, config.get("decode_mode"), "beam")),
        beam_width=int(_first(beam_width, saved_width, config.get("beam_width"), 10)),
        source={"vocabulary": vocab_source, "architecture": arch_source})


def _head(items: list[str], count: int = 5) -> str:
    """The first `count` items, comma separated, with how many more there are."""
    more = f" ... (+{len(items) - count})" if len(items) > count else ""
    return ", ".join(items[:count]) + more


def load_state_strict(model: nn.Module, state: Mapping[str, Tensor], ckpt_path: str,
                      arch_source: str) -> None:
    """load_state_dict(strict=True) with a short, actionable report of what does not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = shape_mismatches(expected, state)
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(
            f"checkpoint {ckpt_path} does not fit the model built from {arch_source}: "
            f"missing {len(missing)} [{_head(missing)}], unexpected {len(unexpected)} "
            f"[{_head(unexpected)}], shape mismatches {len(wrong)} [{_head(wrong)}]. For a published "
            f"checkpoint pass the architecture it was trained with (--backbone, --conv_type, "
            f"--hsa-attention on|off, ...)")
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------
# CTC alignment of a decoded sentence


def forced_align(log_probs: Tensor, targets: Sequence[int], blank: int = 0) -> list[int]:
    """Viterbi CTC alignment: per step the index of the target it emits, or -1 for a blank step.

    log_probs is (T, C). The best path among those that collapse to `targets` is returned; ties
    prefer staying in the current state, so spans are as compact as the scores allow.
    """
    lp = log_probs.detach().float().cpu()
    steps, n = lp.shape[0], len(targets)
    if n == 0:
        return [-1] * steps
    states = [blank] + [s for t in targets for s in (int(t), blank)]  # blank, l1, blank, l2, ..., blank
    num_states = len(states)
    emit = lp[:, states]  # (T, S)
    neg = torch.tensor(float("-inf"))
    score = torch.full((num_states,), float("-inf"))
    score[0] = emit[0, 0]
    score[1] = emit[0, 1]
    back = torch.zeros((steps, num_states), dtype=torch.long)
    # A state may skip the blank before it only when its label differs from the one two states back.
    label = torch.tensor(states)
    can_skip = torch.zeros(num_states, dtype=torch.bool)
    can_skip[2:] = (label[2:] != blank) & (label[2:] != label[:-2])
    for t in range(1, steps):
        stay = score
        step1 = torch.cat([neg[None], score[:-1]])
        step2 = torch.where(can_skip, torch.cat([neg[None].expand(2), score[:-2]]), neg)
        choices = torch.stack([stay, step1, step2])  # (3, S)
        best, arg = choices.max(dim=0)  # max returns the first maximum: 'stay' wins ties
        score = best + emit[t]
        back[t] = torch.arange(num_states) - arg
    final = [num_states - 1, num_states - 2]
    end = max(final, key=lambda s: float(score[s]))
    if not torch.isfinite(score[end]):
        raise ValueError(f"{n} glosses cannot be aligned to {steps} output steps (CTC needs at least "
                         f"one step per gloss plus one between repeats)")
    path = [0] * steps
    state = end
    for t in range(steps - 1, -1, -1):
        path[t] = state
        state = int(back[t, state])
    return [(s - 1) // 2 if s % 2 == 1 else -1 for s in path]


def gloss_step_spans(alignment: Sequence[int], num_glosses: int) -> list[tuple[int, int]]:
    """(first, last) output step of each gloss in a forced alignment."""
    spans: list[list[int]] = [[-1, -1] for _ in range(num_glosses)]
    for step, k in enumerate(alignment):
        if k >= 0:
            if spans[k][0] < 0:
                spans[k][0] = step
            spans[k][1] = step
    if any(s[0] < 0 for s in spans):
        raise ValueError("alignment leaves a gloss without any output step")
    return [(a, b) for a, b in spans]


def steps_to_frames(first: int, last: int, stride: int, num_frames: int) -> tuple[int, int]:
    """Input frames covered by output steps first..last: step t is frames [t*stride, (t+1)*stride)."""
    start = min(first * stride, num_frames - 1)
    end = min((last + 1) * stride - 1, num_frames - 1)
    return start, end


# ---------------------------------------------------------------------------------------------
# Frames -> network input, and one recognition pass


@dataclass
class PreparedInput:
    """A padded one-video batch and where the real frames sit inside it."""

    video: Tensor  # (1, T_padded, 3, H, W) in [-1, 1]
    length: Tensor  # (1,) padded length, as the feeder's collate gives it
    num_frames: int  # T: real frames
    left_pad: int  # frames copied in front of the first one
    stride: int  # input frames per output step


def prepare_input(frames: np.ndarray, kernel_sizes: Sequence[str], input_size: int = 224,
                  image_scale: float = 1.0) -> PreparedInput:
    """The feeder's test transform and collate padding applied to (T, H, W, 3) RGB uint8 frames."""
    from dataset.collate import pad_collate, temporal_padding
    from dataset.transforms import build_transform

    transform = build_transform(train=False, crop_size=input_size, image_scale=image_scale)
    video = transform(frames)
    num_frames = int(video.shape[0])
    padded, length, *_ = pad_collate([(video, torch.zeros(0, dtype=torch.long), {})], kernel_sizes)
    left_pad, stride = temporal_padding(kernel_sizes)
    return PreparedInput(video=padded, length=length, num_frames=num_frames, left_pad=left_pad,
                         stride=stride)


@dataclass
class Recognition:
    """A decoded sentence with its CTC alignment on the output steps."""

    glosses: list[str]
    class_indices: list[int]
    step_spans: list[tuple[int, int]]
    log_probs: Tensor  # (T', C) log-softmax of the sequence logits, valid steps only


def align_sentence(logits: Tensor, glosses: Sequence[str], gloss_dict: Mapping) -> Recognition:
    """Forced-align decoded glosses to (T', C) logits: each gloss gets the steps of its best path."""
    log_probs = logits.detach().float().log_softmax(-1).cpu()
    indices = [int(gloss_dict[g][0]) for g in glosses]
    alignment = forced_align(log_probs, indices, blank=0)
    spans = gloss_step_spans(alignment, len(indices))
    return Recognition(list(glosses), indices, spans, log_probs)


def describe(rec: Recognition, prepared: PreparedInput, source_indices: Sequence[int]) -> list[dict]:
    """Per gloss: class index, output steps, input frames, source-video frames and a score.

    score is the mean probability of the gloss over its aligned steps; log_prob their sum.
    """
    out = []
    for position, (gloss, index, (first, last)) in enumerate(
            zip(rec.glosses, rec.class_indices, rec.step_spans)):
        f0, f1 = steps_to_frames(first, last, prepared.stride, prepared.num_frames)
        step_lp = rec.log_probs[first:last + 1, index]
        out.append({"gloss": gloss, "position": position, "class_index": index,
                    "steps": [first, last], "frames": [f0, f1],
                    "source_frames": [int(source_indices[f0]), int(source_indices[f1])],
                    "score": round(float(step_lp.exp().mean()), 6),
                    "log_prob": round(float(step_lp.sum()), 6)})
    return out


# ---------------------------------------------------------------------------------------------
# Command-line options shared by test_one_video.py and generate_cam.py


def _on_off(value: str) -> bool:
    """Parse on/off style booleans for the architecture options."""
    text = str(value).strip().lower()
    if text in ("on", "1", "true", "yes"):
        return True
    if text in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"expected on/off, got {value!r}")


def add_model_arguments(parser) -> None:
    """--model_path, --video_path, device, vocabulary, decoding and published-architecture options."""
    parser.add_argument("--model_path", required=True,
                        help="checkpoint (.pt) from main.py or a published one")
    parser.add_argument("--video_path", required=True,
                        help="video file (.mp4 .avi .mov .mkv .webm) or folder of frame images")
    parser.add_argument("--device", default="auto",
                        help="'cpu', a GPU index such as 0, or 'auto' (default: GPU 0 if present)")
    parser.add_argument("--language", default="phoenix",
                        choices=["phoenix", "phoenix2014-T", "csl-daily"],
                        help="picks preprocess/<dataset>/gloss_dict.npy when the checkpoint has "
                             "no vocabulary")
    parser.add_argument("--unsafe-load", "--unsafe_load", dest="unsafe_load", action="store_true",
                        help="load a checkpoint that needs arbitrary code to unpickle "
                             "(torch.load weights_only=False); only for a source you trust")
    parser.add_argument("--dict_path", default=None, help="gloss_dict.npy (overrides the checkpoint's)")
    parser.add_argument("--max_frames_num", type=int, default=360,
                        help="frames sampled uniformly at most")
    parser.add_argument("--search_mode", default=None, choices=["beam", "max"],
                        help="CTC decoding (default: the training config's decode_mode, else beam)")
    parser.add_argument("--beam", type=int, default=None,
                        help="beam width (default: the training config's, else 10)")
    arch = parser.add_argument_group("architecture of a published checkpoint (ignored when the "
                                     "checkpoint carries model_args) and input size")
    arch.add_argument("--backbone", default="resnet34", help="c2d_type, e.g. resnet18 or resnet34")
    arch.add_argument("--conv_type", type=int, default=2)
    arch.add_argument("--use_bn", type=_on_off, default=True, metavar="on|off")
    arch.add_argument("--hidden_size", type=int, default=1024)
    arch.add_argument("--hsa-attention", "--hsa_attention", dest="hsa_attention", type=_on_off,
                      default=True, metavar="on|off")
    arch.add_argument("--weight_norm", type=_on_off, default=True, metavar="on|off")
    arch.add_argument("--share_classifier", type=_on_off, default=True, metavar="on|off")
    arch.add_argument("--input_size", type=int, default=None,
                      help="center crop size (default: the training config's, else 224)")
    arch.add_argument("--image_scale", type=float, default=None,
                      help="resize after the crop (default: the training config's, else 1.0)")
    arch.add_argument("--frames_res", default=None,
                      help="frames are resized to this before the crop, as preprocessing did "
                           "(default: the training config's, else 256x256px)")
    arch.add_argument("--base_width", type=int, default=64, help="ResNet width (64 published)")
    arch.add_argument("--aux_dim", type=int, default=1000,
                      help="hierarchical branch width (1000 published)")


def arch_from_args(args) -> ArchOptions:
    """ArchOptions from parsed command-line arguments."""
    return ArchOptions(c2d_type=args.backbone, conv_type=args.conv_type, use_bn=args.use_bn,
                       hidden_size=args.hidden_size, weight_norm=args.weight_norm,
                       share_classifier=args.share_classifier, hsa_attention=args.hsa_attention,
                       base_width=args.base_width, aux_dim=args.aux_dim)


def load_model_and_video(args) -> tuple[LoadedModel, VideoClip, PreparedInput, torch.device]:
    """The checkpoint's model (options of add_model_arguments) and the video, ready for it."""
    check_source(args.video_path)  # a typo in the path fails before the model loads
    device = select_device(args.device)
    loaded = build_model(args.model_path, device, dict_path=args.dict_path,
                         language=args.language, arch=arch_from_args(args),
                         input_size=args.input_size, image_scale=args.image_scale,
                         frames_res=args.frames_res, search_mode=args.search_mode,
                         beam_width=args.beam, unsafe_load=args.unsafe_load)
    clip = load_frames(args.video_path, max_frames=args.max_frames_num, size=loaded.frame_size)
    prepared = prepare_input(clip.frames, loaded.model.kernel_sizes, loaded.input_size,
                             loaded.image_scale)
    return loaded, clip, prepared, device
