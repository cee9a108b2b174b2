"""ImageNet initialisation of the frame ResNet, as the original's `resnet34()` does: torchvision's
published weights, fetched once into torch's hub cache (SHA-256 prefix checked, as torch.hub does)."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from torch import nn

from utils.checkpoint import CheckpointError
from utils.errors import ConfigError, MissingFileError

logger = logging.getLogger(__name__)

# torchvision names of the 5-D conv weights: conv1, layerX.Y.conv{1,2}, layerX.Y.downsample.0.
_CONV_KEY = re.compile(r"^(conv1|layer\d+\.\d+\.(conv\d|downsample\.0))\.weight$")
# torchvision's published ImageNet weights; the file name ends in its SHA-256 prefix (torch.hub's rule).
TORCHVISION_URL = "https://download.pytorch.org/models/"
TORCHVISION_FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet34": "resnet34-b627a593.pth"}
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.pth$")
IMAGENET = ("imagenet", "auto", True)  # model_args.pretrained values meaning torchvision's weights
SCRATCH = ("none", None, False)        # ... meaning random initialisation


def hub_file(arch: str) -> Path:
    """Where torch's hub cache keeps torchvision's `arch` weights (`$TORCH_HOME/hub/checkpoints`)."""
    if arch not in TORCHVISION_FILES:
        raise ConfigError(f"model_args.pretrained: torchvision publishes ImageNet weights for "
                          f"{', '.join(TORCHVISION_FILES)}, not {arch!r}; set model_args.pretrained "
                          f"to a file's path, or none")
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILES[arch]


def imagenet_url(arch: str) -> str:
    """torchvision's published URL of the `arch` weights."""
    return TORCHVISION_URL + hub_file(arch).name


def fetch_imagenet(arch: str) -> Path:
    """The hub cache's copy of torchvision's `arch` weights, downloaded there first if absent.

    Offline (or a download whose hash does not match): one error line giving the URL, where to
    put the file and the option that points at a copy."""
    path = hub_file(arch)
    if path.is_file():
        return path
    url = imagenet_url(arch)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        logger.info("downloading %s into %s", url, path.parent)
        torch.hub.download_url_to_file(url, str(path), hash_prefix=_HASH_IN_NAME.search(path.name)[1],
                                       progress=False)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a hash mismatch a RuntimeError
        reason = getattr(exc, "reason", None) or exc
        raise MissingFileError(
            f"the {arch} backbone starts from ImageNet (model_args.pretrained: imagenet, as the "
            f"published recipe) but {path.name} is not in torch's hub cache and could not be "
            f"downloaded ({reason}): download {url} into {path.parent}/ , or put it anywhere and "
            f"pass --set model_args.pretrained=PATH (--set model_args.pretrained=none trains the "
            f"backbone from scratch)") from None
    return path


def resolve_pretrained(arch: str, pretrained: str | os.PathLike | bool | None) -> Path | None:
    """The file to initialise from: None for `none`, the hub cache's (fetched) copy for
    `imagenet`, else the path given (which must exist)."""
    if pretrained in SCRATCH:
        return None
    if pretrained in IMAGENET:
        return fetch_imagenet(arch)
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise MissingFileError(f"model_args.pretrained: {path} does not exist (give a torchvision-"
                               f"format {arch} .pth file, imagenet for torchvision's, or none)")
    return path


def torchvision_to_stfnet(state: dict[str, torch.Tensor], conv3d: bool = True) -> dict[str, torch.Tensor]:
    """Map a torchvision ResNet state dict to our backbone's keys (conv weights gain a T=1 axis
    unless the backbone keeps torchvision's 4-D ones, `conv3d=False`)."""
    mapped = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue  # the ImageNet classifier has no counterpart
        mapped[key] = (value.unsqueeze(2) if conv3d and _CONV_KEY.match(key) and value.dim() == 4
                       else value)
    return mapped


def load_imagenet_resnet(backbone: nn.Module, arch: str,
                         pretrained: str | os.PathLike | bool | None) -> Path | None:
    """Load ImageNet weights into `backbone` (modules.resnet.ResNet); the file read, None for `none`."""
    path = resolve_pretrained(arch, pretrained)
    if path is None:
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for damaged files
        raise CheckpointError(f"cannot read pretrained weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise CheckpointError(f"{path} is not a torchvision ResNet state dict (no 'conv1.weight')")
    own = backbone.state_dict()
    mapped = torchvision_to_stfnet(state, conv3d=own["conv1.weight"].dim() == 5)
    for key, value in mapped.items():
        if key not in own:
            raise CheckpointError(f"{path}: key {key!r} has no place in the {arch} backbone (is it a "
                                  f"torchvision {arch} file?)")
        if own[key].shape != value.shape:
            raise CheckpointError(f"{path}: {key!r} has shape {tuple(value.shape)}, the backbone needs "
                                  f"{tuple(own[key].shape)} (base_width must be 64 with ImageNet "
                                  f"weights; model_args.pretrained: none trains from scratch)")
    missing = sorted(k for k in own if _is_resnet_key(k) and k not in mapped
                     and not k.endswith("num_batches_tracked"))
    if missing:
        raise CheckpointError(f"{path}: no weights for {missing[:5]}{'...' if len(missing) > 5 else ''}; "
                              f"is it a torchvision {arch} file?")
    backbone.load_state_dict(mapped, strict=False)
    return path


def _is_resnet_key(key: str) -> bool:
    """True for plain-ResNet keys (not the fusion blocks or their gates)."""
    return key.startswith(("conv1.", "bn1.", "layer"))
