"""float32 accuracy against a float64 oracle: our default path vs the original Conv3d formulation."""
from __future__ import annotations

import copy

import pytest
import torch

from modules import batchnorm
from tests.reference.conv3d import conv3d_reference
from modules.criterions import total_loss
from tests.test_model import labels, tiny_model, video

pytestmark = pytest.mark.usefixtures("single_thread")


def relative_error(value: torch.Tensor, exact: torch.Tensor) -> float:
    """||value - exact|| / ||exact|| in float64."""
    exact = exact.detach().double()
    return float((value.detach().double() - exact).norm() / exact.norm())


def batchnorm_errors(layer: torch.nn.Module, memory_format: torch.memory_format) -> list[float]:
    """Errors of output, input gradient and weight gradient of a float32 layer against float64."""
    generator = torch.Generator().manual_seed(0)
    x64 = torch.randn(24, 16, 28, 28, generator=generator, dtype=torch.float64) * 2 + 1.5
    grad64 = torch.randn(x64.shape, generator=generator, dtype=torch.float64)
    results = []
    for dtype in (torch.float64, torch.float32):
        bn = copy.deepcopy(layer).to(dtype)
        x = x64.to(dtype).contiguous(memory_format=memory_format).detach().requires_grad_()
        y = bn(x)
        y.backward(grad64.to(dtype).contiguous(memory_format=memory_format))
        results.append((y, x.grad, bn.weight.grad, bn.bias.grad))
    exact, approx = results
    return [relative_error(a, e) for a, e in zip(approx, exact)]


def test_channels_last_batchnorm_as_accurate_as_contiguous():
    torch.manual_seed(0)
    native = torch.nn.BatchNorm2d(16)
    with torch.no_grad():
        native.weight.uniform_(0.5, 1.5)
        native.bias.normal_()
    ours = batchnorm.BatchNorm2d(16)
    ours.load_state_dict(native.state_dict())
    contiguous = batchnorm_errors(native, torch.contiguous_format)
    accurate = batchnorm_errors(ours, torch.channels_last)
    plain = batchnorm_errors(native, torch.channels_last)
    for name, a, c in zip(("output", "grad input", "grad weight", "grad bias"), accurate, contiguous):
        assert a <= 3 * c + 1e-7, f"{name}: channels-last {a:.2e} vs contiguous {c:.2e}"
    # The case the module exists for: PyTorch's own channels-last kernel is clearly worse here.
    assert max(plain) > 10 * max(contiguous), (plain, contiguous)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_running_stats_and_eval_match_torch(momentum):
    torch.manual_seed(0)
    native = torch.nn.BatchNorm2d(8, momentum=momentum)
    ours = batchnorm.BatchNorm2d(8, momentum=momentum)
    assert list(ours.state_dict()) == list(native.state_dict())
    for step in range(3):
        x = torch.randn(6, 8, 5, 7).contiguous(memory_format=torch.channels_last) + step
        assert batchnorm.needs_accurate_stats(x)
        torch.testing.assert_close(ours(x), native(x), rtol=1e-5, atol=1e-5)
    for key, value in native.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=1e-6, atol=1e-7, msg=key)
    ours.eval(), native.eval()
    torch.testing.assert_close(ours(x), native(x))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ours.train()(torch.randn(1, 8, 1, 1).contiguous(memory_format=torch.channels_last))


def _loss_and_grads(model: torch.nn.Module, x: torch.Tensor, len_x: torch.Tensor,
                    label: torch.Tensor, label_lgt: torch.Tensor) -> tuple:
    """Train-mode loss, sequence logits and every parameter gradient (same dropout masks)."""
    model.train().zero_grad(set_to_none=True)
    torch.manual_seed(1)
    out = model(x, len_x)
    loss = total_loss(model.loss_terms(out, label, label_lgt))
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), out["sequence_logits"].detach(), grads


def _errors(result: tuple, oracle: tuple) -> dict[str, float]:
    """Loss, logits, all-gradient and median per-parameter gradient errors against the oracle."""
    loss, logits, grads = result
    exact_loss, exact_logits, exact_grads = oracle
    assert grads.keys() == exact_grads.keys()
    per_param = sorted(relative_error(grads[n], g) for n, g in exact_grads.items() if g.norm() > 0)
    flat = torch.cat([grads[n].flatten().double() for n in exact_grads])
    exact_flat = torch.cat([g.flatten() for g in exact_grads.values()])
    return {"loss": relative_error(loss, exact_loss), "logits": relative_error(logits, exact_logits),
            "grads": relative_error(flat, exact_flat), "median grad": per_param[len(per_param) // 2]}


def test_float32_training_as_accurate_as_the_conv3d_formulation():
    """The default (channels-last) model against float64, next to the original's float32 errors."""
    model = tiny_model()
    with torch.no_grad():  # non-zero alpha so that the fusion blocks count
        model.conv2d.alpha.copy_(torch.tensor([0.5, -0.4, 0.3]))
    reference = conv3d_reference(model)
    x, len_x = video(2, 32, 40), torch.tensor([32, 28])
    label, label_lgt = labels([2, 2])
    oracle = _loss_and_grads(copy.deepcopy(reference).double(), x.double(), len_x, label, label_lgt)
    ours = _errors(_loss_and_grads(model, x, len_x, label, label_lgt), oracle)
    original = _errors(_loss_and_grads(reference, x, len_x, label, label_lgt), oracle)
    # Measured here: ours within 1.25x of the original on every figure; PyTorch's own
    # channels-last batch norm 3.8x (logits) to 4.5x (gradients) worse. A lone scalar (the loss)
    # can be lucky either way, hence its floor.
    for key in ours:
        floor = 1e-6 if key == "loss" else 1e-7
        assert ours[key] <= 2 * original[key] + floor, (key, ours, original)
    with torch.no_grad():  # eval mode (running statistics) too
        exact = copy.deepcopy(reference).double().eval()(x.double(), len_x)["sequence_logits"]
        ours_eval = relative_error(model.eval()(x, len_x)["sequence_logits"], exact)
        original_eval = relative_error(reference.eval()(x, len_x)["sequence_logits"], exact)
    assert ours_eval <= 2 * original_eval + 1e-7, (ours_eval, original_eval)
