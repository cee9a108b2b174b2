"""The training step of train_epoch: each loss term once per step, a loss_terms override trained and logged."""
from __future__ import annotations

import pytest
import torch

import slr_network
from modules.criterions import total_loss
from seq_scripts import prepare_batch, train_epoch, train_step
from training.run import Run
from training.state import StepOptions
from tests.test_model import labels, tiny_model, video

pytestmark = pytest.mark.usefixtures("single_thread")

CTC_HEADS = 5  # ConvCTC, SeqCTC and the three hierarchical auxiliary heads


def batches(count: int) -> list[tuple]:
    """Collated-feeder-like batches of two videos of different lengths."""
    label, label_lgt = labels([2, 2])
    return [(video(2, 28 + i), torch.tensor([28 + i, 24]), label, label_lgt, [f"v{i}a", f"v{i}b"])
            for i in range(count)]


def train(model: torch.nn.Module, data: list[tuple], **options) -> tuple:
    """One epoch of train_epoch over `data` on the CPU."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    opts = StepOptions.recipe(device=torch.device("cpu"), log_interval=0, progress_bar=False, **options)
    run = Run(core=model, optimizer=optimizer, opts=opts)
    result = train_epoch(run, data, total_batches=len(data))
    return result, run.state


def count_ctc(monkeypatch) -> list[int]:
    """Count calls of the model's per-sample CTC."""
    calls = [0]
    original = slr_network.ctc_per_sample

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(slr_network, "ctc_per_sample", counted)
    return calls


def test_each_loss_term_is_computed_once_per_step(monkeypatch):
    calls = count_ctc(monkeypatch)
    result, state = train(tiny_model().train(), batches(2))
    assert state.global_step == 2
    assert calls[0] == 2 * CTC_HEADS  # the trainer used to evaluate every term twice
    assert set(result.terms) == {"SeqCTC", "ConvCTC", "Dist", "Cu", "Cp", "AuxCTC0", "AuxCTC1",
                                 "AuxCTC2"}
    # The logged terms are those summed into the loss (one batch: their sum is its loss).
    one, _ = train(tiny_model().train(), batches(1))
    assert sum(one.terms.values()) == pytest.approx(one.mean_loss, rel=1e-5)


def test_train_step_is_the_forward_loss_and_backward_of_one_batch():
    torch.manual_seed(0)
    model = tiny_model().train()
    reference = tiny_model().train()
    reference.load_state_dict(model.state_dict())
    run = Run(core=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
              opts=StepOptions.recipe(device=torch.device("cpu"), log_interval=0, progress_bar=False))
    prepared = prepare_batch(run, batches(1)[0])
    torch.manual_seed(5)
    step = train_step(run, prepared)
    # Independently: the same forward and summed loss terms, backward by hand.
    video, video_len, label, label_len, _ = prepared
    torch.manual_seed(5)
    loss = total_loss(reference.loss_terms(reference(video, video_len, label=label, label_lgt=label_len),
                                           label, label_len))
    loss.backward()
    assert step.loss == float(loss.detach()) and step.videos == 2 and not step.skip_report
    assert sum(step.terms.values()) == pytest.approx(step.loss, rel=1e-5)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), name


def test_train_step_skips_a_nonfinite_loss_without_a_gradient(monkeypatch):
    model = tiny_model().train()
    original = model.loss_terms
    monkeypatch.setattr(model, "loss_terms", lambda *a: {**original(*a), "Bad": torch.tensor(float("nan"))})
    run = Run(core=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
              opts=StepOptions.recipe(device=torch.device("cpu"), log_interval=0, progress_bar=False))
    step = train_step(run, prepare_batch(run, batches(1)[0]))
    assert step.loss is None and "videos ['v0a', 'v0b']" in step.skip_report
    assert all(p.grad is None for p in model.parameters())
    run.opts.skip_nonfinite = False
    with pytest.raises(FloatingPointError, match="v0a"):
        train_step(run, prepare_batch(run, batches(1)[0]))


def test_total_loss_refuses_a_model_without_terms():
    with pytest.raises(ValueError, match="no terms"):
        total_loss({})


class ResearcherLoss(slr_network.SLRModel):
    """Research code changing the loss: Dist weighted twice, plus an L2 penalty on the classifier."""

    def loss_terms(self, outputs, labels, label_lengths):
        terms = super().loss_terms(outputs, labels, label_lengths)
        terms["Dist"] = 2.0 * terms["Dist"]
        terms["L2"] = 1e-3 * self.classifier.weight.pow(2).sum()
        return terms


def test_an_overridden_loss_terms_is_the_trained_and_logged_loss(monkeypatch):
    calls = count_ctc(monkeypatch)
    torch.manual_seed(0)
    base = tiny_model()
    changed = ResearcherLoss(base.num_classes, "resnet18", 2, base_width=8, hidden_size=32,
                             aux_dim=16, loss_weights=base.loss_weights)
    changed.load_state_dict(base.state_dict())
    l2 = 1e-3 * float((base.classifier.weight.detach().double() ** 2).sum())  # at the weights of the step
    data = batches(1)
    torch.manual_seed(3)
    plain, _ = train(base.train(), data)
    torch.manual_seed(3)
    overridden, _ = train(changed.train(), data)
    assert list(overridden.terms) == [*plain.terms, "L2"]
    assert overridden.terms["L2"] == pytest.approx(l2, rel=1e-5)
    assert overridden.terms["Dist"] == pytest.approx(2 * plain.terms["Dist"], rel=1e-5)
    assert overridden.mean_loss == pytest.approx(plain.mean_loss + plain.terms["Dist"] + l2, rel=1e-5)
    assert calls[0] == 2 * CTC_HEADS  # still once per step each


def test_bf16_autocast_training_keeps_ctc_in_float32_and_learns(monkeypatch):
    """`--amp bf16`: the CTC terms see float32 log-probabilities; the loss tracks float32's."""
    seen = []
    original = torch.nn.functional.ctc_loss

    def recorded(log_probs, *args, **kwargs):
        seen.append(log_probs.dtype)
        return original(log_probs, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "ctc_loss", recorded)
    data = batches(1) * 4  # the same batch four times: the loss must fall
    torch.manual_seed(2)
    fp32, _ = train(tiny_model().train(), data[:1])
    torch.manual_seed(2)
    model = tiny_model().train()
    first, _ = train(model, data[:1], amp_dtype=torch.bfloat16)
    assert seen and set(seen) == {torch.float32}
    assert first.mean_loss == pytest.approx(fp32.mean_loss, rel=0.05)  # bf16 rounding only
    later, state = train(model, data[1:], amp_dtype=torch.bfloat16)
    assert state.skipped_batches == 0 and all(p.dtype == torch.float32 for p in model.parameters())
    assert later.mean_loss < first.mean_loss


def test_fast_recipe_config_resolves(repo_root):
    from utils.config import resolve_config

    cfg, _ = resolve_config(["--config", str(repo_root / "config" / "fast_train.yaml")])
    assert cfg["feeder_args"]["packed"] is True and cfg["length_bucketing"]["enabled"] is True
    assert cfg["model_args"]["c2d_type"] == "resnet34" and cfg["batch_size"] == 2  # published model
