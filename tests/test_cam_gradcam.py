"""inference.gradcam on constructed models whose output depends on one image region only."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inference.gradcam import (GradCAM, cam_from_activation, contact_sheet, frame_major, normalise_maps,
                           overlay_heatmap, resolve_layer, upsample_maps)


class FrameLayer(nn.Module):
    """A per-frame conv whose output is (B*T, C, h, w), or (B, C, T, h, w) like a Conv3d backbone."""

    def __init__(self, channels_in: int, channels_out: int, clip_layout: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        self.clip_layout = clip_layout

    def forward(self, frames: torch.Tensor, batch: int) -> torch.Tensor:
        out = torch.relu(self.conv(frames))
        return out.unflatten(0, (batch, -1)).transpose(1, 2) if self.clip_layout else out


class RegionModel(nn.Module):
    """A toy video model: only the top-left quadrant of frames `active` reaches the output."""

    def __init__(self, clip_layout: bool, active: tuple[int, int]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.active = active
        self.conv2d = nn.Module()
        self.conv2d.stem = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.conv2d.layer4 = FrameLayer(6, 8, clip_layout)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (T, B, 5) logits."""
        batch, frames, _, height, width = x.shape
        mask = torch.zeros(height, width)
        mask[: height // 2, : width // 2] = 1.0  # the only region the output can see
        f = self.conv2d.layer4(torch.relu(self.conv2d.stem(x.flatten(0, 1) * mask)), batch)
        if f.dim() == 5:
            pooled = f.mean(dim=(-2, -1)).permute(2, 0, 1)  # (B, C, T) -> (T, B, C)
        else:
            pooled = f.mean(dim=(-2, -1)).unflatten(0, (batch, frames)).transpose(0, 1)
        keep = torch.zeros(frames, 1, 1)
        keep[self.active[0]:self.active[1] + 1] = 1.0
        return self.head(pooled) * keep  # frames outside `active` do not reach the output either


def _maps(clip_layout: bool) -> torch.Tensor:
    """Grad-CAM maps (T, h, w) of class 3 summed over time, for a 7-frame 16x16 random video."""
    model = RegionModel(clip_layout, active=(2, 4))
    x = torch.rand(1, 7, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with GradCAM(model, "conv2d.layer4") as cam:
        target = model(x)[:, 0, 3].sum()
        return cam.maps(target, batch=1, frames=7)[0]


@pytest.mark.parametrize("clip_layout", [False, True])
def test_gradcam_is_larger_on_the_region_that_drives_the_logit(clip_layout):
    maps = _maps(clip_layout)
    assert maps.shape == (7, 16, 16)  # one map per input frame, both layer layouts
    assert torch.isfinite(maps).all() and (maps >= 0).all()
    up = upsample_maps(maps, (64, 64))
    assert up.shape == (7, 64, 64) and torch.isfinite(up).all()
    for t in range(2, 5):
        assert float(maps[t, :8, :8].mean()) > 0 and float(maps[t].std()) > 0  # non-constant
        # two 3x3 convs spread the quadrant by 2 pixels; beyond that nothing reaches the logit
        assert float(maps[t, 10:].abs().max()) == 0.0 and float(maps[t, :, 10:].abs().max()) == 0.0
        inside = up[t, :28, :28].mean()
        outside = torch.cat([up[t, 44:].flatten(), up[t, :, 44:].flatten()]).mean()
        assert inside > 100 * outside
    # frames whose logits are ignored get no gradient, hence an all-zero map
    for t in (0, 1, 5, 6):
        assert float(maps[t].abs().max()) == 0.0


def test_cam_from_activation_matches_loop():
    g = torch.Generator().manual_seed(0)
    act, grad = torch.randn(3, 4, 5, 6, generator=g), torch.randn(3, 4, 5, 6, generator=g)
    expected = torch.zeros(3, 5, 6)
    for t in range(3):
        for c in range(4):
            expected[t] += grad[t, c].mean() * act[t, c]
    torch.testing.assert_close(cam_from_activation(act, grad), expected.clamp_min(0))


def test_frame_major_layouts():
    x = torch.arange(2 * 3 * 4 * 5 * 5, dtype=torch.float32).reshape(2 * 3, 4, 5, 5)  # (B*T, C, h, w)
    bt = frame_major(x, batch=2, frames=3)
    assert bt.shape == (2, 3, 4, 5, 5)
    clip = x.unflatten(0, (2, 3)).transpose(1, 2)  # (B, C, T, h, w)
    torch.testing.assert_close(frame_major(clip, batch=2, frames=3), bt)
    with pytest.raises(ValueError, match="cannot map a layer output"):
        frame_major(torch.zeros(5, 4, 2, 2), batch=2, frames=3)


def test_normalise_maps():
    maps = torch.tensor([[[0.0, 2.0]], [[0.0, 1.0]]])
    torch.testing.assert_close(normalise_maps(maps), torch.tensor([[[0.0, 1.0]], [[0.0, 0.5]]]))
    torch.testing.assert_close(normalise_maps(maps, per_frame=True), torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]]]))
    assert torch.equal(normalise_maps(torch.zeros(2, 3, 3)), torch.zeros(2, 3, 3))


def test_unknown_layer_lists_candidates():
    model = RegionModel(False, active=(0, 0))
    with pytest.raises(ValueError, match="conv2d.layer4"):
        resolve_layer(model, "conv2d.layer9")


def test_hooks_removed_and_target_checks():
    model = RegionModel(False, active=(0, 1))
    x = torch.rand(1, 2, 3, 8, 8)
    with GradCAM(model, "conv2d.layer4") as cam:
        out = model(x)
        with pytest.raises(ValueError, match="scalar"):
            cam.maps(out.sum(-1), batch=1, frames=2)
    assert not model.conv2d.layer4._forward_hooks
    with GradCAM(model, "conv2d.layer4") as cam:
        with pytest.raises(RuntimeError, match="did not run"):
            cam.maps(torch.tensor(1.0, requires_grad=True), batch=1, frames=2)


def test_overlay_and_contact_sheet():
    frame = np.full((32, 32, 3), 128, np.uint8)
    heat = np.zeros((32, 32), np.float32)
    heat[:8, :8] = 1.0
    blended = overlay_heatmap(frame, heat)
    assert blended.shape == frame.shape and blended.dtype == np.uint8
    assert not np.array_equal(blended[0, 0], blended[-1, -1])  # hot corner differs from cold one
    sheet = contact_sheet([blended] * 5, [str(i) for i in range(5)], "title", [i < 2 for i in range(5)],
                          columns=3, tile_size=40)
    assert sheet.shape == (28 + 2 * 42, 3 * 42, 3)
    wide = np.zeros((30, 60, 3), np.uint8)  # 2:1 frames stay 2:1 (40 x 20 tiles), not squeezed
    long_title = "#0 GLOSS  frames 0-1  (all 2 frames shown)  layer conv2d.layer4"
    sheet = contact_sheet([wide, wide], ["0", "1"], long_title, [True, True], tile_size=40)
    assert sheet.shape[0] == 28 + 20 + 2 and sheet.shape[1] > 2 * 42  # wide enough for the title
    assert sheet[28:48, 44:84].mean() < 80 and sheet[-1, 90:].mean() == 24  # tile, then background


def test_cutting_the_graph_at_the_layer_changes_nothing_but_memory():
    model = RegionModel(False, active=(1, 3))
    x = torch.rand(1, 5, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    results = {}
    for detach in (False, True):
        model.zero_grad(set_to_none=True)
        with GradCAM(model, "conv2d.layer4", detach_upstream=detach) as cam:
            results[detach] = cam.maps(model(x)[:, 0, 1].sum(), batch=1, frames=5)
        # with the cut, no gradient reaches the layers before the hooked one
        assert (model.conv2d.stem.weight.grad is None) == detach
    torch.testing.assert_close(results[True], results[False])


@pytest.mark.parametrize("num_frames, shows", [(36, "32 of 36 frames shown"), (20, "all 20 frames shown")])
def test_gloss_sheet_says_which_frames_it_shows(monkeypatch, num_frames, shows):
    from types import SimpleNamespace

    from inference import explain

    drawn = {}
    monkeypatch.setattr(explain, "contact_sheet", lambda tiles, labels, title, *_: drawn.update(
        labels=labels, title=title))
    rec = SimpleNamespace(step_spans=[(1, 2)], glosses=["REGEN"])
    frames = [np.zeros((8, 8, 3), np.uint8)] * num_frames
    explain.gloss_sheet(rec, 0, frames, SimpleNamespace(stride=4, num_frames=num_frames))
    assert f"#0 REGEN  frames 4-11  ({shows})" in drawn["title"]
    assert len(drawn["labels"]) == min(num_frames, 32)
