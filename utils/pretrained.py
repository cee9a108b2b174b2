"""ImageNet initialisation of the frame ResNet from a local torchvision-format file (never downloads)."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from torch import nn

from utils.checkpoint import CheckpointError
from utils.errors import MissingFileError

logger = logging.getLogger(__name__)

# torchvision names of the 5-D conv weights: conv1, layerX.Y.conv{1,2}, layerX.Y.downsample.0.
_CONV_KEY = re.compile(r"^(conv1|layer\d+\.\d+\.(conv\d|downsample\.0))\.weight$")


def hub_checkpoint(arch: str) -> Path | None:
    """The torchvision `<arch>-*.pth` file in torch's hub cache (`$TORCH_HOME/hub/checkpoints`), if any."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(folder.glob(f"{arch}-*.pth")) if folder.is_dir() else []
    return found[0] if found else None


def resolve_pretrained(arch: str, pretrained: str | os.PathLike | bool | None) -> Path | None:
    """The file to load: an explicit path (must exist), or the hub cache for True / 'auto'."""
    if pretrained in (None, False):
        return None
    if pretrained is True or pretrained == "auto":
        path = hub_checkpoint(arch)
        if path is None:
            logger.warning("no ImageNet %s weights in %s/checkpoints (nothing is downloaded): the "
                           "backbone trains from scratch. Put torchvision's %s-*.pth there or pass "
                           "--pretrained PATH.", arch, torch.hub.get_dir(), arch)
        return path
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise MissingFileError(f"pretrained weights not found: {path} (give a torchvision-format "
                               f"{arch} .pth file, or 'auto' to use the torch hub cache)")
    return path


def torchvision_to_stfnet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a torchvision ResNet state dict to our backbone's keys (conv weights gain a T=1 axis)."""
    mapped = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue  # the ImageNet classifier has no counterpart
        mapped[key] = value.unsqueeze(2) if _CONV_KEY.match(key) and value.dim() == 4 else value
    return mapped


def load_imagenet_resnet(backbone: nn.Module, arch: str,
                         pretrained: str | os.PathLike | bool | None) -> bool:
    """Load ImageNet weights into `backbone` (modules.resnet.ResNet); False if none were found."""
    path = resolve_pretrained(arch, pretrained)
    if path is None:
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for damaged files
        raise CheckpointError(f"cannot read pretrained weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise CheckpointError(f"{path} is not a torchvision ResNet state dict (no 'conv1.weight')")
    mapped = torchvision_to_stfnet(state)
    own = backbone.state_dict()
    for key, value in mapped.items():
        if key not in own:
            raise CheckpointError(f"{path}: key {key!r} has no place in the {arch} backbone (is it a "
                                  f"torchvision {arch} file?)")
        if own[key].shape != value.shape:
            raise CheckpointError(f"{path}: {key!r} has shape {tuple(value.shape)}, the backbone needs "
                                  f"{tuple(own[key].shape)} (base_width must be 64 with ImageNet weights)")
    missing = sorted(k for k in own if _is_resnet_key(k) and k not in mapped
                     and not k.endswith("num_batches_tracked"))
    if missing:
        raise CheckpointError(f"{path}: no weights for {missing[:5]}{'...' if len(missing) > 5 else ''}; "
                              f"is it a torchvision {arch} file?")
    backbone.load_state_dict(mapped, strict=False)
    logger.info("backbone initialised with ImageNet weights from %s", path)
    return True


def _is_resnet_key(key: str) -> bool:
    """True for plain-ResNet keys (not the fusion blocks or their gates)."""
    return key.startswith(("conv1.", "bn1.", "layer"))
