"""Published-checkpoint compatibility and ImageNet initialisation of the STF-Net network."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch

from modules.resnet import resnet18
from slr_network import SLRModel
from utils.checkpoint import CheckpointError, load_checkpoint, model_state_from_checkpoint
from utils.pretrained import load_imagenet_resnet

# The published checkpoint's keys, shapes and dtypes, shipped with the tests so that every clone
# checks that a change to the network still loads the published weights.
KEY_TABLE = Path(__file__).parent / "data" / "stfnet-state-dict-resnet34-1296.tsv"


pytestmark = pytest.mark.usefixtures("single_thread")


def read_key_table(path) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype) rows of the published state-dict listing (comment lines skipped)."""
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or line.startswith("key\t") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(n) for n in re.findall(r"\d+", shape)), dtype))
    return rows


def test_shipped_key_table_equals_reference_copy(shared_dir):
    reference = shared_dir / "reference" / KEY_TABLE.name
    if not reference.is_file():
        pytest.skip(f"reference key table {reference} is absent")
    assert KEY_TABLE.read_bytes() == reference.read_bytes()


def test_resnet34_state_dict_equals_published_key_table():
    published = read_key_table(KEY_TABLE)
    assert len(published) == 423
    model = SLRModel(1296, "resnet34", 2)
    ours = [(k, tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]
    assert ours == published  # same keys, shapes, dtypes and order
    # A checkpoint in the original format (DataParallel names) loads with strict matching.
    state = {f"module.{k}": torch.zeros(s, dtype=getattr(torch, d.split(".")[1]))
             for k, s, d in published}
    model.load_state_dict(model_state_from_checkpoint({"model_state_dict": state}), strict=True)
    assert not model.conv2d.alpha.detach().any()


def test_strict_load_of_original_format_checkpoint_reproduces_outputs(tmp_path):
    kwargs = dict(base_width=8, hidden_size=32, aux_dim=16)
    torch.manual_seed(0)
    source = SLRModel(7, "resnet18", 2, **kwargs).eval()
    path = tmp_path / "dev_21.40_epoch40_model.pt"
    torch.save({"epoch": 40, "model_state_dict": {f"module.{k}": v for k, v in
                                                  source.state_dict().items()}}, path)
    torch.manual_seed(1)
    target = SLRModel(7, "resnet18", 2, **kwargs).eval()
    target.load_state_dict(model_state_from_checkpoint(load_checkpoint(path)), strict=True)
    x, len_x = torch.randn(1, 20, 3, 32, 32), torch.tensor([20])
    with torch.no_grad():
        torch.testing.assert_close(target(x, len_x)["sequence_logits"],
                                   source(x, len_x)["sequence_logits"], rtol=0, atol=0)


def torchvision_resnet18_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A fake state dict with torchvision's resnet18 keys and shapes (4-D convs, fc)."""
    generator = torch.Generator().manual_seed(seed)
    state = {"conv1.weight": torch.randn(64, 3, 7, 7, generator=generator)}

    def bn(prefix: str, c: int) -> None:
        state.update({f"{prefix}.weight": torch.rand(c, generator=generator),
                      f"{prefix}.bias": torch.randn(c, generator=generator),
                      f"{prefix}.running_mean": torch.randn(c, generator=generator),
                      f"{prefix}.running_var": torch.rand(c, generator=generator) + 0.5})

    bn("bn1", 64)
    inplanes = 64
    for stage, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            cin = inplanes if block == 0 else planes
            state[f"{p}.conv1.weight"] = torch.randn(planes, cin, 3, 3, generator=generator)
            bn(f"{p}.bn1", planes)
            state[f"{p}.conv2.weight"] = torch.randn(planes, planes, 3, 3, generator=generator)
            bn(f"{p}.bn2", planes)
            if block == 0 and stage > 1:
                state[f"{p}.downsample.0.weight"] = torch.randn(planes, cin, 1, 1, generator=generator)
                bn(f"{p}.downsample.1", planes)
        inplanes = planes
    state["fc.weight"] = torch.randn(1000, 512, generator=generator)
    state["fc.bias"] = torch.randn(1000, generator=generator)
    return state


def test_imagenet_init_from_torchvision_file(tmp_path):
    state = torchvision_resnet18_state()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    backbone = resnet18()
    fusion_before = backbone.shift1.st_conv[3].weight.clone()
    assert load_imagenet_resnet(backbone, "resnet18", path)
    torch.testing.assert_close(backbone.conv1.weight[:, :, 0], state["conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(backbone.layer3[0].downsample[0].weight[:, :, 0],
                               state["layer3.0.downsample.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    torch.testing.assert_close(backbone.shift1.st_conv[3].weight, fusion_before)  # untouched


def test_imagenet_init_from_hub_cache_and_clear_absence(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with caplog.at_level(logging.WARNING, logger="utils.pretrained"):
        assert not load_imagenet_resnet(resnet18(base_width=8), "resnet18", "auto")
    assert "from scratch" in caplog.text
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(torchvision_resnet18_state(3), tmp_path / "hub" / "checkpoints" / "resnet18-abc.pth")
    backbone = resnet18()
    assert load_imagenet_resnet(backbone, "resnet18", True)
    torch.testing.assert_close(backbone.conv1.weight[:, :, 0],
                               torchvision_resnet18_state(3)["conv1.weight"])


def test_imagenet_init_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_imagenet_resnet(resnet18(), "resnet18", tmp_path / "missing.pth")
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_resnet18_state(), path)
    with pytest.raises(CheckpointError, match="base_width must be 64"):
        load_imagenet_resnet(resnet18(base_width=8), "resnet18", path)
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a torchvision ResNet"):
        load_imagenet_resnet(resnet18(), "resnet18", tmp_path / "other.pth")
