"""Parity of the VAC and CorrNet baselines with their original code, on the same weights and input.

Opt-in: set STFNET_VAC_REPO / STFNET_CORRNET_REPO to a checkout of github.com/VIPL-SLP/VAC_CSLR /
github.com/hulianyuyy/CorrNet. The original model runs in its own process
(tests/reference/family_original.py): one training-mode forward, loss and backward on a seeded
batch of two videos of different lengths; ours loads its weights (strict) and runs the same.
Outputs, loss and every parameter's gradient must agree to a relative error below 1e-4.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from corrnet_network import CorrNetModel
from vac_network import VACModel

RUNNER = Path(__file__).parent / "reference" / "family_original.py"
LOSS_WEIGHTS = {"SeqCTC": 1.0, "ConvCTC": 1.0, "Dist": 25.0}
TOLERANCE = 1e-4

# model, the variable naming the checkout, the original's arguments (each its published
# classifier) and the frame size: CorrNet's AvgPool2d(7) needs 7x7 last maps (193-224 pixels).
CASES = {
    "vac": (VACModel, "STFNET_VAC_REPO",
            dict(num_classes=12, c2d_type="resnet18", conv_type=2, hidden_size=64,
                 weight_norm=False, share_classifier=False), 64),
    "corrnet": (CorrNetModel, "STFNET_CORRNET_REPO",
                dict(num_classes=12, c2d_type="resnet18", conv_type=2, hidden_size=64,
                     weight_norm=True, share_classifier=True), 200),
}


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """||ours - reference|| / ||reference||."""
    return float((ours.double() - reference.double()).norm() / reference.double().norm())


def original_run(repo: Path, name: str, spec: dict, out: Path) -> dict:
    """The original code's weights, input, outputs, loss and gradients (family_original.py)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(RUNNER), str(repo), name, "run", json.dumps(spec),
                           str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out, weights_only=True)


def our_run(name: str, ref: dict, dtype: torch.dtype) -> dict:
    """Our model's outputs, loss and gradients on the original run's weights and input."""
    cls, _, kwargs, _ = CASES[name]
    model = cls(**kwargs, loss_weights=LOSS_WEIGHTS).train().to(dtype)
    model.load_state_dict(ref["state"], strict=True)
    model.temporal_model.rnn.dropout = 0.0  # as the original's run
    out = model(ref["video"].to(dtype), ref["len_x"])
    assert out["feat_len"].tolist() == ref["feat_len"].long().tolist()
    loss = sum(model.loss_terms(out, ref["label"], ref["label_lgt"]).values())
    loss.backward()
    return {"conv_logits": out["conv_logits"].detach(), "loss": loss.detach(),
            "sequence_logits": out["sequence_logits"].detach(),
            "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None}}


def errors_against(run: dict, ref: dict) -> dict[str, float]:
    """Relative errors of a run's outputs, loss and worst parameter gradient against `ref`."""
    errors = {key: relative_error(run[key], ref[key])
              for key in ("conv_logits", "sequence_logits", "loss")}
    assert sorted(run["grads"]) == sorted(ref["grads"])
    # Conv biases right before a training-mode batch norm have exactly zero gradient: their
    # computed ones (~1e-15 in float64) are rounding noise, with no relative error to speak of.
    errors["gradient"] = max(relative_error(run["grads"][n], g) for n, g in ref["grads"].items()
                             if g.norm() > 1e-9)
    return errors


def parity_errors(name: str, repo: Path, tmp_path: Path) -> dict[str, dict[str, float]]:
    """Relative errors against the original in float64: ours in float64, and the original's
    and ours in float32 (the same weights and input)."""
    spec = {"seed": 0, "model": {**CASES[name][2], "use_bn": 1},  # the original requires it
            "lengths": [28, 24], "size": CASES[name][3],
            "label": [3, 1, 4, 1, 5], "label_lengths": [3, 2], "dtype": "float64"}
    ref = original_run(repo, name, spec, tmp_path / "original64.pt")
    original32 = original_run(repo, name, {**spec, "dtype": "float32",
                                           "like": str(tmp_path / "original64.pt")},
                              tmp_path / "original32.pt")
    return {"ours float64": errors_against(our_run(name, ref, torch.float64), ref),
            "original float32": errors_against(original32, ref),
            "ours float32": errors_against(our_run(name, ref, torch.float32), ref)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_loss_and_gradients_equal_the_original(name, tmp_path, single_thread):
    variable = CASES[name][1]
    if not os.environ.get(variable):
        pytest.skip(f"opt-in: set {variable} to a checkout of the original {name} repository")
    repo = Path(os.environ[variable])
    if not (repo / "slr_network.py").is_file():
        pytest.skip(f"{variable}={repo} has no slr_network.py: not a checkout of the original")
    errors = parity_errors(name, repo, tmp_path)
    print(f"{name}: relative errors against the original in float64: {errors}")
    assert max(errors["ours float64"].values()) < TOLERANCE, errors
    for key, original in errors["original float32"].items():  # float32: as accurate as the original
        assert errors["ours float32"][key] <= 4 * original + 1e-6, (key, errors)
