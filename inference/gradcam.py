"""Grad-CAM with plain PyTorch hooks, plus the drawing of heat maps and contact sheets.

The backbone runs its 2-D convolutions over every frame, so a layer output is either
(B, C, T, h, w) (3-D convs with 1xkxk kernels, as the original STF-Net backbone) or
(B*T, C, h, w) (frames folded into the batch). `frame_major` accepts both and yields (B, T, C, h, w),
so one map per input frame comes out whichever layout the model uses.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inference.fonts import draw_text, load_font
from utils.errors import ConfigError


def resolve_layer(model: nn.Module, layer_name: str) -> nn.Module:
    """The sub-module called `layer_name` (dotted path), with the valid names in the error."""
    try:
        return model.get_submodule(layer_name)
    except AttributeError:
        prefix = layer_name.rsplit(".", 1)[0] if "." in layer_name else ""
        try:
            parent = model.get_submodule(prefix) if prefix else model
        except AttributeError:
            parent = model
        base = f"{prefix}." if prefix and parent is not model else ""
        names = [f"{base}{name}" for name, _ in parent.named_children()]
        raise ConfigError(f"layer {layer_name!r} not found in {type(model).__name__}; "
                          f"candidates: {', '.join(names) or '(none)'} (e.g. conv2d.layer4)") from None


def frame_major(t: Tensor, batch: int, frames: int) -> Tensor:
    """Layer output (B, C, T, h, w), (B, T, C, h, w) or (B*T, C, h, w) as (B, T, C, h, w)."""
    if t.dim() == 5 and t.shape[0] == batch:
        if t.shape[2] == frames:  # (B, C, T, h, w), the original Conv3d layout: checked first
            return t.transpose(1, 2)
        if t.shape[1] == frames:
            return t
    if t.dim() == 4 and t.shape[0] == batch * frames:
        return t.reshape(batch, frames, *t.shape[1:])
    raise ConfigError(f"cannot map a layer output of shape {tuple(t.shape)} to {batch} video(s) of "
                      f"{frames} frames; pick a backbone layer that keeps per-frame spatial maps "
                      f"(e.g. conv2d.layer4)")


def cam_from_activation(activation: Tensor, gradient: Tensor) -> Tensor:
    """Grad-CAM of (..., C, h, w) activations: ReLU(sum_c mean_hw(grad_c) * act_c) -> (..., h, w)."""
    weights = gradient.mean(dim=(-2, -1), keepdim=True)
    return torch.relu((weights * activation).sum(dim=-3))


class GradCAM:
    """Records one layer's output and its gradient; use as a context manager so hooks are removed.

    >>> with GradCAM(model, "conv2d.layer4") as cam:
    ...     out = model(x, lengths); maps = cam.maps(target(out), batch=1, frames=x.shape[1])
    """

    def __init__(self, model: nn.Module, layer_name: str, detach_upstream: bool = True) -> None:
        self.layer_name = layer_name
        self.module = resolve_layer(model, layer_name)
        # Grad-CAM needs d(target)/d(layer output) only: cutting the graph at the layer means the
        # layers before it keep no activations for backward (a long video then fits in memory).
        self.detach_upstream = detach_upstream
        self.activation: Tensor | None = None
        self.gradient: Tensor | None = None
        self._handle = None

    def __enter__(self) -> "GradCAM":
        self._handle = self.module.register_forward_hook(self._forward_hook)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _forward_hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
        """Snapshot the output (later in-place ops must not change it) and hook its gradient."""
        if not isinstance(output, Tensor):
            raise ConfigError(f"layer {self.layer_name!r} returns {type(output).__name__}, not a tensor; "
                              f"pick a layer whose output is a feature map")
        if self.activation is not None:
            raise ConfigError(f"layer {self.layer_name!r} ran twice in one forward pass; Grad-CAM "
                              f"needs a layer called once per forward")
        self.activation = output.detach().clone()
        if self.detach_upstream:
            leaf = output.detach().requires_grad_(True)
            leaf.register_hook(self._save_gradient)
            return leaf.clone()  # a non-leaf: the model may still modify it in place
        if output.requires_grad:
            output.register_hook(self._save_gradient)
        return None

    def _save_gradient(self, grad: Tensor) -> None:
        """Keep the gradient of the target with respect to the layer output."""
        self.gradient = grad.detach()

    def reset(self) -> None:
        """Forget the recorded activation, before the next forward pass."""
        self.activation = None
        self.gradient = None

    def maps(self, target: Tensor, batch: int, frames: int, retain_graph: bool = False) -> Tensor:
        """Back-propagate the scalar `target`; return Grad-CAM maps (B, T, h, w) at layer resolution."""
        if self.activation is None:
            raise RuntimeError(f"layer {self.layer_name!r} did not run in the forward pass; run the "
                               f"model inside the `with GradCAM(...)` block")
        if target.dim() != 0:
            raise ValueError(f"Grad-CAM target must be a scalar, got shape {tuple(target.shape)}")
        if not target.requires_grad:
            raise RuntimeError("Grad-CAM target does not require grad; run the forward pass with "
                               "torch.enable_grad()")
        self.gradient = None
        target.backward(retain_graph=retain_graph)
        if self.gradient is None:
            raise RuntimeError(f"the target does not depend on layer {self.layer_name!r}")
        act = frame_major(self.activation, batch, frames).float()
        grad = frame_major(self.gradient, batch, frames).float()
        return cam_from_activation(act, grad)


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of (T, h, w) maps to (T, H, W) with size = (H, W)."""
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def normalise_maps(maps: Tensor, per_frame: bool = False) -> Tensor:
    """Scale maps to [0, 1] by the global maximum (frames keep their relative strength) or per frame."""
    if per_frame:
        peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    else:
        peak = maps.max().clamp_min(1e-12)
    return (maps / peak).clamp(0.0, 1.0)


def overlay_heatmap(frame_rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (JET colormap) over an RGB uint8 frame of the same size."""
    heat8 = np.clip(np.round(heat * 255.0), 0, 255).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(heat8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(frame_rgb, 1.0 - alpha, colour, alpha, 0.0)


def contact_sheet(tiles: Sequence[np.ndarray], labels: Sequence[str], title: str,
                  highlight: Sequence[bool], columns: int = 8, tile_size: int = 112) -> np.ndarray:
    """Grid of RGB tiles (whole frames, `tile_size` wide at their aspect ratio), each labelled,
    highlighted ones framed, under a title line that is never cut; RGB uint8."""
    if not tiles:
        raise ValueError("contact sheet needs at least one frame")
    columns = max(1, min(columns, len(tiles)))
    rows = (len(tiles) + columns - 1) // columns
    header, gap = 28, 2
    tile_h = max(1, round(tile_size * tiles[0].shape[0] / tiles[0].shape[1]))
    width = max(columns * (tile_size + gap), int(load_font(15).getlength(title)) + 12)
    sheet = np.full((header + rows * (tile_h + gap), width, 3), 24, np.uint8)
    draw_text(sheet, title, (6, 5), 15, (255, 255, 255))
    for k, (tile, label, hot) in enumerate(zip(tiles, labels, highlight)):
        y = header + (k // columns) * (tile_h + gap)
        x = (k % columns) * (tile_size + gap)
        thumb = cv2.resize(tile, (tile_size, tile_h), interpolation=cv2.INTER_AREA)
        if hot:  # frames the alignment assigns to the gloss
            cv2.rectangle(thumb, (0, 0), (tile_size - 1, tile_h - 1), (255, 255, 0), 3)
        draw_text(thumb, label, (5, tile_h - 19), 12, (255, 255, 0) if hot else (255, 255, 255))
        sheet[y:y + tile_h, x:x + tile_size] = thumb
    return sheet
