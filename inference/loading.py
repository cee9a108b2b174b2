"""Checkpoint -> model for the single-video tools (model_building.py builds it; main.py builds
its own the same way).

A checkpoint of this project carries its config (the `model` class, feeder settings, decoding),
`model_args` and `gloss_dict`; a published one carries only weights, so its architecture comes
from a config file (config/baseline.yaml is the published model) with `--set` overrides, never
from restated constructor arguments.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from dataset.feeder import check_frame_geometry
from dataset.layout import parse_resolution
from dataset.registry import dataset_for_language, dataset_spec
from dataset.vocabulary import check_gloss_dict, check_same_vocabulary, load_gloss_dict
from decoding.config import DecodeConfig
from inference.loaded_model import LoadedModel, vocab_name
from inference.network import CTCLogProbs
from model_building import MAX_PARAM_GIB, construct_model, load_weights, model_class, model_kwargs
from utils.checkpoint import CheckpointMismatchError, load_checkpoint, model_state_from_checkpoint
from utils.config import (default_config, merge_config, nest, parse_set_item, resolve_config,
                          upgrade_saved_config)
from utils.errors import ConfigError, MissingFileError


# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# Checkpoint -> eval-mode model for the single-video tools


def model_config(saved: Mapping[str, Any] | None, config: str | os.PathLike | None = None,
                 overrides: Sequence[str] = ()) -> dict:
    """The config a model is rebuilt from: the checkpoint's (keys of earlier versions moved, the
    rest from the published recipe) or, for weights only or when given, the YAML `config`
    (default: the published recipe, config/baseline.yaml), with `--set KEY=VALUE` items applied."""
    if saved is not None and config is None:
        cfg = merge_config(default_config(), upgrade_saved_config(saved), "checkpoint config", strict=False)
    elif config is None:
        cfg = default_config()  # the published models' architecture
    else:
        cfg, _ = resolve_config(["--config", str(config)])
    for item in overrides:
        keys, value = parse_set_item(item)
        cfg = merge_config(cfg, nest(keys, value), f"--set {item}")
    return cfg


def default_dict_path(language: str) -> Path:
    """Where preprocessing writes the gloss dictionary of the dataset behind `language`."""
    return Path(dataset_for_language(language).output_dir) / "gloss_dict.npy"


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


def resolve_vocabulary(ckpt: Mapping[str, Any], ckpt_path: str, dict_path: str | None,
                       language: str, other_vocabulary: bool = False) -> tuple[dict, str]:
    """(gloss_dict, where it came from): --dict_path, else the checkpoint's, else preprocess/.

    A --dict_path other than the checkpoint's own vocabulary is refused unless `other_vocabulary`.
    """
    if dict_path is not None:
        given = load_gloss_dict(dict_path, hint="check --dict_path")
        saved = ckpt.get("gloss_dict")
        # Another size fails later against the classifier anyway; the same size would be silent.
        if isinstance(saved, Mapping) and len(saved) == len(given) and not other_vocabulary:
            check_same_vocabulary(given, ckpt["gloss_dict"], f"--dict_path {dict_path}",
                                  f"{ckpt_path}['gloss_dict']", "--other_vocabulary")
        return given, str(dict_path)
    if isinstance(ckpt.get("gloss_dict"), Mapping):
        source = f"{ckpt_path}['gloss_dict']"
        return check_gloss_dict(ckpt["gloss_dict"], source), source
    path = default_dict_path(language)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {ckpt_path} carries no vocabulary and {path} does not "
                               f"exist; pass --dict_path <gloss_dict.npy of the training data>")
    return load_gloss_dict(path), str(path)


def model_from_checkpoint(ckpt_path: str | os.PathLike, device: torch.device | str = "cpu", *,
                          dict_path: str | None = None, language: str | None = None,
                          config: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                          decode: Mapping[str, Any] | None = None, unsafe_load: bool = False,
                          other_vocabulary: bool = False, max_param_gib: float = MAX_PARAM_GIB,
                          log: Callable[[str], None] | None = None) -> LoadedModel:
    """Load a checkpoint (this project's, or a published weights-only one) as an eval-mode model.

    The model class and its arguments come from the checkpoint (config['model'], model_args);
    for a weights-only checkpoint from `config` (default config/baseline.yaml) and `overrides`.
    `overrides` (`feeder_args.input_size=112`, ...) and `decode` (keys of the decode section) win;
    decoding is otherwise the training config's, without its LM (a file of the training machine).
    `unsafe_load` unpickles arbitrary objects (utils.checkpoint.load_checkpoint): trusted files only.
    `log` hears that a file carries no checksum (published, older): it then loads unverified.
    `max_param_gib` bounds the parameter memory of the model its sizes describe (construct_model).
    Without `dict_path` or a vocabulary in the checkpoint, the dictionary is the one preprocessing
    writes for `language`'s dataset, by default the config's `dataset`.
    """
    ckpt_path = str(ckpt_path)
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if log is not None:
            log(message)

    ckpt = load_checkpoint(ckpt_path, map_location="cpu", unsafe=unsafe_load, log=note)
    state = model_state_from_checkpoint(ckpt)
    saved_cfg = ckpt.get("config") if isinstance(ckpt.get("config"), Mapping) else None
    saved_args = ckpt.get("model_args") if isinstance(ckpt.get("model_args"), Mapping) else None
    if saved_args is not None and config is None:
        saved_cfg = {**(saved_cfg or {}), "model_args": dict(saved_args)}
        arch_source = f"{ckpt_path}['model_args']"
    else:  # weights only, or the user names the config: that file describes the architecture
        saved_cfg = None
        arch_source = str(config or "config/baseline.yaml")
    if overrides:
        arch_source += " with " + " ".join(f"--set {item}" for item in overrides)
    cfg = model_config(saved_cfg, config, overrides)
    language = language or dataset_spec(cfg["dataset"], key="the config's 'dataset'").language_names[0]
    gloss_dict, vocab_source = resolve_vocabulary(ckpt, ckpt_path, dict_path, language, other_vocabulary)
    cls = model_class(cfg["model"], arch_source)
    args, _ = model_kwargs(cfg, cls, 2)
    args = {k: v for k, v in args.items() if k not in ("num_classes", "loss_weights")}
    num_classes = classifier_num_classes(state, int(args.get("hidden_size", 1024)))
    if num_classes is None:
        found = tuple(state["classifier.weight"].shape) if "classifier.weight" in state else "absent"
        raise CheckpointMismatchError(
            f"checkpoint {ckpt_path} does not fit the model of {arch_source}: its classifier.weight "
            f"({found}) does not match hidden_size {args.get('hidden_size')}; pass the config it was "
            f"trained with (--config X.yaml, --set model_args.hidden_size=N)")
    check_vocabulary(num_classes, gloss_dict, ckpt_path, vocab_source)
    args["pretrained"] = None  # weights come from the checkpoint; never fetch anything
    model = construct_model(cls, {"num_classes": num_classes, **args}, arch_source, max_param_gib)
    load_weights(model, state, ckpt_path,
                 hint=f"The model was built from {arch_source}; pass the config it was trained with "
                      f"(--config config/phoenix2014-T.yaml, --set model_args.hsa_attention=false, "
                      f"--set model_args.c2d_type=resnet18, ...)")
    model.to(device).eval()

    # complete: what the config sets over config/baseline.yaml's (a null takes the recipe's)
    feeder_args = {**default_config()["feeder_args"],
                   **{k: v for k, v in (cfg.get("feeder_args") or {}).items() if v is not None}}
    input_size, image_scale = feeder_args["input_size"], feeder_args["image_scale"]
    try:
        check_frame_geometry(input_size, image_scale)
    except ValueError as exc:
        raise ConfigError(f"{arch_source}: {exc}") from None
    if not isinstance(cfg.get("decode"), Mapping):
        raise ConfigError(f"{arch_source}: the decode section is a {type(cfg.get('decode')).__name__}, "
                          f"not a mapping of decode keys; pass --config with the training config")
    device = torch.device(device)
    return LoadedModel(
        model=model, runner=CTCLogProbs(model).eval(), device=device, gloss_dict=gloss_dict, num_classes=num_classes,
        kernel_sizes=list(model.kernel_sizes),
        input_size=int(input_size), image_scale=float(image_scale),
        frame_size=parse_resolution(feeder_args["frames_res"]),
        decode=DecodeConfig.from_mapping({**cfg["decode"], "lm_path": None}).updated(decode or {}),
        source={"vocabulary": vocab_source, "architecture": arch_source, "model": ckpt_path,
                "checksum": "none: not verified" if notes else "SHA-256 verified"})


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu", **options: Any
               ) -> LoadedModel:
    """A checkpoint (.pt) as an eval-mode model (options: model_from_checkpoint's), or an exported
    .onnx file run by onnxruntime on the CPU (options: decode only)."""
    from inference.onnx_stream import is_stream_export  # onnxruntime only when it is used

    if str(path).lower().endswith(".onnx") or is_stream_export(path):
        from inference.onnx_model import load_onnx_model  # onnxruntime only when it is used

        ignored = [k for k, v in options.items()
                   if v not in (None, False, (), [], {}) and k not in ("decode", "log")]
        if ignored:
            raise ConfigError(f"{path} is an exported model: its vocabulary and architecture are "
                              f"fixed in it and {vocab_name(path)}; drop {', '.join(sorted(ignored))}")
        if is_stream_export(path):
            from inference.onnx_stream import load_stream_export

            return load_stream_export(path, options.get("decode"))
        return load_onnx_model(path, options.get("decode"))
    return model_from_checkpoint(path, device, **options)
