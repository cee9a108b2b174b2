"""Run the ORIGINAL VAC or CorrNet code (a checkout of its repository) for the parity checks.

    python tests/reference/family_original.py REPO {vac,corrnet} table
        prints the state-dict key table (key, shape, dtype) of the published configuration
    python tests/reference/family_original.py REPO {vac,corrnet} run SPEC_JSON OUT.pt
        builds the original model as SPEC says (seed, dtype, arguments; "like": the weights and
        input of an earlier OUT.pt), runs one training step's forward, loss and backward on a
        seeded input, and saves the weights, input, outputs, loss and gradients to OUT.pt

A separate process, since the originals' top-level packages (`modules`, `utils`) share names
with this project's. What the originals import but this machine lacks is stubbed: torchvision's
ResNet (tests/reference/torchvision_resnet.py, torchvision's layers and initialisation),
ctcdecode's decoder (used only in eval mode) and CorrNet's ImageNet download (no weights).
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch
import torch.utils.model_zoo

# The published configurations (the repositories' configs/baseline.yaml, PHOENIX-2014 vocabulary).
PUBLISHED = {
    # VAC's released resnet18 checkpoint (README "Inference"): plain linear classifiers.
    "vac": dict(num_classes=1296, c2d_type="resnet18", conv_type=2, use_bn=1,
                weight_norm=False, share_classifier=False),
    "corrnet": dict(num_classes=1296, c2d_type="resnet18", conv_type=2, use_bn=1,
                    weight_norm=True, share_classifier=True),
}
LOSS_WEIGHTS = {"SeqCTC": 1.0, "ConvCTC": 1.0, "Dist": 25.0}


def import_original(repo: Path) -> types.ModuleType:
    """The original repository's slr_network module, with the stubs in place."""
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(repo), str(here)]
    import torchvision_resnet

    torchvision = types.ModuleType("torchvision")
    torchvision.models = torchvision_resnet
    sys.modules["torchvision"] = torchvision
    sys.modules["torchvision.models"] = torchvision_resnet
    utils = types.ModuleType("utils")
    utils.Decode = lambda *args, **kwargs: None  # ctcdecode's beam search: eval mode only
    sys.modules["utils"] = utils
    torch.utils.model_zoo.load_url = lambda *args, **kwargs: {}  # no ImageNet download
    import slr_network
    return slr_network


def key_table(model: torch.nn.Module) -> str:
    """The state dict as tab-separated key, shape, dtype rows."""
    return "\n".join(f"{k}\t{tuple(v.shape)}\t{v.dtype}" for k, v in model.state_dict().items())


def run(slr_network: types.ModuleType, spec: dict, out: Path) -> None:
    """One seeded training-mode forward, loss and backward of the original model."""
    dtype = getattr(torch, spec.get("dtype", "float32"))
    torch.set_default_dtype(dtype)
    torch.manual_seed(spec["seed"])
    model = slr_network.SLRModel(**spec["model"], loss_weights=LOSS_WEIGHTS).train()
    model.temporal_model.rnn.dropout = 0.0  # the LSTM's dropout draws differ between codes
    batch, time, size = len(spec["lengths"]), max(spec["lengths"]), spec["size"]
    video = torch.randn(batch, time, 3, size, size)
    if spec.get("like"):  # the weights and input of an earlier run, in this run's dtype
        like = torch.load(spec["like"], weights_only=True)
        model.load_state_dict(like["state"])
        video = like["video"].to(dtype)
    len_x = torch.tensor(spec["lengths"])
    label = torch.tensor(spec["label"])
    label_lgt = torch.tensor(spec["label_lengths"])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ret = model(video, len_x, label, label_lgt)
    loss = model.criterion_calculation(ret, label, label_lgt)
    loss.backward()
    torch.save({"state": state, "video": video, "len_x": len_x, "label": label,
                "label_lgt": label_lgt, "loss": loss.detach(),
                "conv_logits": ret["conv_logits"].detach(),
                "sequence_logits": ret["sequence_logits"].detach(),
                "feat_len": ret["feat_len"],
                "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None}},
               out)


def main(argv: list[str]) -> None:
    repo, name, action = Path(argv[0]), argv[1], argv[2]
    slr_network = import_original(repo)
    if action == "table":
        print(key_table(slr_network.SLRModel(**PUBLISHED[name])))
    else:
        run(slr_network, json.loads(argv[3]), Path(argv[4]))


if __name__ == "__main__":
    main(sys.argv[1:])
