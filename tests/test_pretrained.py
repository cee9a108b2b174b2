"""ImageNet initialisation of the backbone (utils/pretrained.py): torchvision's weights from torch's
hub cache, fetched once with their hash checked; a clear stop offline; `none` trains from scratch.
No network: a fake state dict of torchvision's keys and shapes, served from localhost."""
from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch

import main as main_module
from corrnet_network import CorrNetModel
from modules.resnet import resnet18
from tests.train_support import make_tiny_dataset, tiny_config, write_config
from model_building import backbone_init
from training.run import build_run
from utils import pretrained
from utils.checkpoint import CheckpointError
from utils.config import resolve_config
from utils.errors import ConfigError, MissingFileError
from utils.pretrained import load_imagenet_resnet
from vac_network import VACModel

pytestmark = pytest.mark.usefixtures("single_thread")


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


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache; returns its checkpoints folder (not yet created)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


@pytest.fixture
def offline(monkeypatch) -> str:
    """torchvision's URL replaced by a closed local port: every download fails as offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/models/"
    monkeypatch.setattr(pretrained, "TORCHVISION_URL", url)
    return url


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A local HTTP server standing in for download.pytorch.org; yields the folder it serves."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(pretrained, "TORCHVISION_URL", f"http://127.0.0.1:{server.server_port}/")
    yield root
    server.shutdown()
    server.server_close()


def test_imagenet_init_from_torchvision_file(tmp_path):
    state = torchvision_resnet18_state()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    backbone = resnet18()
    fusion_before = backbone.shift1.st_conv[3].weight.clone()
    assert load_imagenet_resnet(backbone, "resnet18", path) == path
    torch.testing.assert_close(backbone.conv1.weight[:, :, 0], state["conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(backbone.layer3[0].downsample[0].weight[:, :, 0],
                               state["layer3.0.downsample.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    torch.testing.assert_close(backbone.shift1.st_conv[3].weight, fusion_before)  # untouched


def test_imagenet_init_of_vac_and_corrnet_backbones(tmp_path):
    state = torchvision_resnet18_state()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    vac = VACModel(7, "resnet18", 2, hidden_size=16, pretrained=str(path))  # torchvision's 4-D convs
    torch.testing.assert_close(vac.conv2d.layer2[0].downsample[0].weight,
                               state["layer2.0.downsample.0.weight"], rtol=0, atol=0)
    corrnet = CorrNetModel(7, "resnet18", 2, hidden_size=16, pretrained=str(path))  # 5-D, as STF-Net
    torch.testing.assert_close(corrnet.conv2d.conv1.weight[:, :, 0], state["conv1.weight"], rtol=0, atol=0)


def test_imagenet_from_hub_cache_under_torchvisions_name(hub, offline):
    assert pretrained.hub_file("resnet34").name == "resnet34-b627a593.pth"  # torchvision's file
    assert pretrained.imagenet_url("resnet34") == offline + "resnet34-b627a593.pth"
    hub.mkdir(parents=True)
    torch.save(torchvision_resnet18_state(3), hub / "resnet18-f37072fd.pth")
    backbone = resnet18()
    assert load_imagenet_resnet(backbone, "resnet18", "imagenet") == hub / "resnet18-f37072fd.pth"
    torch.testing.assert_close(backbone.conv1.weight[:, :, 0],
                               torchvision_resnet18_state(3)["conv1.weight"])


def test_imagenet_downloaded_once_with_its_hash_checked(hub, served, monkeypatch):
    data = served / "payload.pth"
    torch.save(torchvision_resnet18_state(5), data)
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    good, bad = f"resnet18-{digest[:8]}.pth", f"resnet18-{'0' * 8}.pth"
    data.rename(served / good)
    (served / bad).write_bytes((served / good).read_bytes())
    monkeypatch.setitem(pretrained.TORCHVISION_FILES, "resnet18", bad)
    with pytest.raises(MissingFileError, match="could not be downloaded") as refused:
        pretrained.fetch_imagenet("resnet18")
    assert "\n" not in str(refused.value) and not list(hub.iterdir())  # nothing kept
    monkeypatch.setitem(pretrained.TORCHVISION_FILES, "resnet18", good)
    assert pretrained.fetch_imagenet("resnet18") == hub / good
    (served / good).unlink()  # from now on only the cache has it
    backbone = resnet18()
    assert load_imagenet_resnet(backbone, "resnet18", "imagenet") == hub / good
    torch.testing.assert_close(backbone.conv1.weight[:, :, 0],
                               torchvision_resnet18_state(5)["conv1.weight"])


def test_offline_stop_names_url_folder_and_option(hub, offline):
    with pytest.raises(MissingFileError) as stopped:
        load_imagenet_resnet(resnet18(), "resnet34", "imagenet")
    message = str(stopped.value)
    assert "\n" not in message
    for part in (offline + "resnet34-b627a593.pth", str(hub), "--set model_args.pretrained=PATH",
                 "model_args.pretrained=none"):
        assert part in message


def test_imagenet_init_errors_name_the_problem(tmp_path):
    assert load_imagenet_resnet(resnet18(), "resnet18", "none") is None
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_imagenet_resnet(resnet18(), "resnet18", tmp_path / "missing.pth")
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_resnet18_state(), path)
    with pytest.raises(CheckpointError, match="base_width must be 64"):
        load_imagenet_resnet(resnet18(base_width=8), "resnet18", path)
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a torchvision ResNet"):
        load_imagenet_resnet(resnet18(), "resnet18", tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="resnet50"):
        load_imagenet_resnet(resnet18(), "resnet50", "imagenet")


def test_a_loaded_checkpoint_replaces_the_backbone_init(offline):
    cfg = {"phase": "train", "load_weights": "x.pt", "load_checkpoints": None, "ignore_weights": []}
    args = {"c2d_type": "resnet34", "pretrained": "imagenet"}
    assert backbone_init(cfg, args, None)[0] is None  # nothing fetched
    assert "initial weights: last.pt" in backbone_init({**cfg, "load_weights": None}, args, Path("last.pt"))[1]
    cfg["ignore_weights"] = ["conv2d"]  # the backbone is not loaded: it starts from model_args.pretrained
    assert "trained from scratch" in backbone_init(cfg, {**args, "pretrained": "none"}, None)[1]
    with pytest.raises(MissingFileError, match="could not be downloaded"):
        backbone_init(cfg, args, None)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


def run_config(tiny_data, tmp_path, pretrained_value) -> Path:
    """A tiny run whose backbone is a full-width ResNet18 (ImageNet's shapes)."""
    cfg = tiny_config(tiny_data, tmp_path / "work", num_epoch=1,
                      model_args={"base_width": 64, "pretrained": pretrained_value})
    return write_config(cfg, tmp_path / "run.yaml")


def test_run_log_states_imagenet_init_first(tiny_data, tmp_path, hub, offline):
    hub.mkdir(parents=True)
    torch.save(torchvision_resnet18_state(7), hub / "resnet18-f37072fd.pth")
    cfg, _ = resolve_config(["--config", str(run_config(tiny_data, tmp_path, "imagenet"))])
    run = build_run(cfg)
    first = (tmp_path / "work" / "log.txt").read_text().splitlines()[0]
    assert "backbone initial weights: torchvision's ImageNet resnet18" in first
    assert str(hub / "resnet18-f37072fd.pth") in first
    torch.testing.assert_close(run.core.conv2d.conv1.weight[:, :, 0],
                               torchvision_resnet18_state(7)["conv1.weight"])


def test_run_from_scratch_says_so(tiny_data, tmp_path, hub, offline):
    cfg, _ = resolve_config(["--config", str(run_config(tiny_data, tmp_path, "none"))])
    build_run(cfg)
    first = (tmp_path / "work" / "log.txt").read_text().splitlines()[0]
    assert "random, trained from scratch (model_args.pretrained: none" in first


def test_run_without_weights_offline_stops_with_one_line(tiny_data, tmp_path, hub, offline, capsys):
    assert main_module.cli(["--config", str(run_config(tiny_data, tmp_path, "imagenet"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:")
    assert "--set model_args.pretrained=PATH" in err and offline in err
    assert not (tmp_path / "work").exists()  # stopped before anything was written
