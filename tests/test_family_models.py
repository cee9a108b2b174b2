"""VAC and CorrNet (vac_network.py, corrnet_network.py) in this project's harness: their configs,
VAC's batch norm over real frames only, and the losses they compute from the config's weights."""
from __future__ import annotations

import pytest
import torch
import yaml

from corrnet_network import CorrNetModel
from training.run import build_model
from utils.config import resolve_config
from vac_network import VACModel

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = dict(base_width=8, hidden_size=16, channels_last=False)
WEIGHTS = {"SeqCTC": 1.0, "ConvCTC": 1.0, "Dist": 25.0}


@pytest.mark.parametrize("name, cls, shared", [("vac", VACModel, False),
                                               ("corrnet", CorrNetModel, True)])
def test_config_builds_the_published_recipe(name, cls, shared):
    cfg, _ = resolve_config(["--config", f"config/{name}.yaml", "--set", "model_args.pretrained=null"])
    model, args = build_model(cfg, 1296, print)
    assert type(model) is cls and model.loss_weights == WEIGHTS  # not STF-Net's Cu / Cp terms
    assert args == {"c2d_type": "resnet18", "conv_type": 2, "hidden_size": 1024,
                    "share_classifier": shared, "weight_norm": shared, "pretrained": None,
                    "num_classes": 1296}  # not STF-Net's hsa_attention
    assert cfg["optimizer_args"]["step"] == [20, 35] and cfg["num_epoch"] == 40


def test_vac_normalises_over_real_frames_only():
    torch.manual_seed(0)
    model = VACModel(7, "resnet18", 2, **TINY).train()
    video, lengths = torch.randn(2, 24, 3, 32, 32), torch.tensor([24, 18])
    other = video.clone()
    other[1, 18:] = torch.randn(6, 3, 32, 32) * 5  # different padding
    first, second = model.framewise(video, lengths), model.framewise(other, lengths)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert not first[1, :, 18:].any()  # zero past the length, as the original pads
    # The same as the backbone over the concatenated real frames (the original's masked_bn).
    real = torch.cat([video[0], video[1, :18]])[None]
    torch.testing.assert_close(torch.cat([first[0], first[1, :, :18]], 1),
                               model.conv2d(real)[0][0], rtol=1e-5, atol=1e-6)


def test_corrnet_backbone_sees_every_frame():
    torch.manual_seed(0)
    model = CorrNetModel(7, "resnet18", 2, **TINY).train()
    with torch.no_grad():
        model.conv2d.alpha.fill_(1.0)  # the correlation blocks on
    video, lengths = torch.randn(2, 24, 3, 32, 32), torch.tensor([24, 18])
    other = video.clone()
    other[1, 18:] = 0
    assert not torch.equal(model.framewise(video, lengths), model.framewise(other, lengths))


@pytest.mark.parametrize("cls", [VACModel, CorrNetModel])
def test_loss_terms_follow_the_configured_weights(cls):
    torch.manual_seed(0)
    model = cls(7, "resnet18", 2, loss_weights={"ConvCTC": 2.0, "Dist": 10.0}, **TINY)
    out = model(torch.randn(2, 24, 3, 32, 32), torch.tensor([24, 20]))
    labels, label_lengths = torch.tensor([1, 2, 3, 4]), torch.tensor([2, 2])
    terms = model.loss_terms(out, labels, label_lengths)
    assert list(terms) == ["ConvCTC", "Dist"]
    ctc = torch.nn.functional.ctc_loss(out["conv_logits"].log_softmax(-1), labels, out["feat_len"],
                                       label_lengths, reduction="none").mean()
    torch.testing.assert_close(terms["ConvCTC"], 2.0 * ctc)
    with pytest.raises(Exception, match="unknown key 'loss_weights.Cu'"):
        cls(7, "resnet18", 2, loss_weights={"Cu": 1.0}, **TINY)


def test_bench_trains_each_model_with_its_own_losses_at_one_scale(tmp_path):
    from bench.family import CLASSES, FAMILY, LOSSES, train_config

    for name in FAMILY:
        CLASSES[name](7, "resnet18", 1, loss_weights=LOSSES[name], **TINY)  # what `timing` builds
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(train_config(name, tmp_path, tmp_path / name, 1, 4)))
        cfg, _ = resolve_config(["--config", str(path)])
        model, args = build_model(cfg, 32, print)
        assert args["base_width"] == 8 and args["hidden_size"] == 256 and args["conv_type"] == 1
        expected = WEIGHTS if name != "stfnet" else {**WEIGHTS, "Cu": 0.0005, "Cp": 0.0005}
        assert model.loss_weights == expected and cfg["random_seed"] == 1
