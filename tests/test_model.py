"""STF-Net network: shapes, lengths, losses, training, and equality with the Conv3d formulation."""
from __future__ import annotations

import pytest
import torch

from tests.reference.conv3d import conv3d_reference
from modules.criterions import total_loss
from modules.tconv import TemporalConv, kernel_sizes_for, output_lengths, runs_on
from slr_network import SLRModel
from utils.errors import ConfigError

NUM_CLASSES = 9
LOSS_WEIGHTS = {"SeqCTC": 1.0, "ConvCTC": 1.0, "Dist": 25.0, "Cu": 0.0005, "Cp": 0.0005}


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_model(conv_type: int = 2, **kwargs) -> SLRModel:
    """A resnet18 STF-Net a few hundred times smaller than the published one."""
    torch.manual_seed(0)
    options = dict(base_width=8, hidden_size=32, aux_dim=16, loss_weights=LOSS_WEIGHTS)
    options.update(kwargs)
    return SLRModel(NUM_CLASSES, "resnet18", conv_type, **options)


def video(batch: int, time: int, size: int = 32, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Deterministic random clip batch (B, T, 3, size, size) in [-1, 1]."""
    generator = torch.Generator().manual_seed(batch * 1000 + time)
    return torch.rand(batch, time, 3, size, size, generator=generator, dtype=dtype) * 2 - 1


def labels(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated gloss labels (no blank) and their lengths."""
    generator = torch.Generator().manual_seed(sum(lengths))
    return (torch.randint(1, NUM_CLASSES, (sum(lengths),), generator=generator),
            torch.tensor(lengths))


@pytest.mark.parametrize("time", [31, 32])
def test_shapes_and_lengths_odd_even_and_padding(time):
    model = tiny_model().train()
    len_x = torch.tensor([time, time - 5])
    out = model(video(2, time), len_x)
    expected = output_lengths(len_x, ["K5", "P2", "K5", "P2"])
    assert expected.tolist() == [((t - 4) // 2 - 4) // 2 for t in len_x.tolist()]
    assert torch.equal(out["feat_len"], expected)
    steps = ((time - 4) // 2 - 4) // 2
    assert out["conv_logits"].shape == (steps, 2, NUM_CLASSES)
    assert out["sequence_logits"].shape == (steps, 2, NUM_CLASSES)
    assert len(out["aux_logits"]) == 3 and out["res2"] is out["aux_logits"]
    assert all(a.shape == (steps, 2, NUM_CLASSES) for a in out["aux_logits"])
    assert out["framewise_features"].shape == (2, 64, time)
    assert out["loss_LiftPool_u"].dim() == 0 and out["loss_LiftPool_p"].dim() == 0
    assert "recognized_sents" not in out and "conv_sents" not in out  # decoding is decoding/'s
    # BiLSTM output past a sample's length is padding: exactly the classifier of zeros.
    assert torch.count_nonzero(out["sequence_logits"][expected[1]:, 1]) == 0


@pytest.mark.parametrize("conv_type, specs", [(0, ["K3"]), (1, ["K5", "P2"]),
                                              (2, ["K5", "P2", "K5", "P2"])])
def test_conv_types_length_arithmetic_in_features_mode(conv_type, specs):
    assert kernel_sizes_for(conv_type) == specs
    model = tiny_model(conv_type).train()
    assert model.kernel_sizes == specs
    time = 33
    len_x = torch.tensor([33, 27, 20])
    out = model(torch.randn(3, 64, time), len_x)  # features mode: (B, C, T)
    manual = {0: lambda t: t - 2, 1: lambda t: (t - 4) // 2,
              2: lambda t: ((t - 4) // 2 - 4) // 2}[conv_type]
    assert out["feat_len"].tolist() == [manual(t) for t in len_x.tolist()]
    assert out["conv_logits"].shape == (manual(time), 3, NUM_CLASSES)
    assert out["sequence_logits"].shape == (manual(time), 3, NUM_CLASSES)
    assert out["aux_logits"] == []
    label, label_lgt = labels([2, 1, 1])
    assert torch.isfinite(total_loss(model.loss_terms(out, label, label_lgt)))


@pytest.mark.parametrize("conv_type", [0, 1, 2])
def test_runs_on_says_exactly_which_lengths_the_temporal_stack_runs_on(conv_type):
    torch.manual_seed(0)
    stack = TemporalConv(4, 8, conv_type).eval()
    for time in range(1, 24):
        try:
            with torch.no_grad():
                stack(torch.randn(1, 4, time), torch.tensor([time]))
            ran = True
        except (RuntimeError, ValueError):  # too short: a conv or an instance norm refuses
            ran = False
        assert runs_on(time, stack.kernel_size) == ran, time


@pytest.mark.parametrize("conv_type", [0, 1])
def test_other_conv_types_on_videos_align_aux_heads(conv_type):
    out = tiny_model(conv_type).train()(video(1, 16), torch.tensor([16]))
    steps = out["feat_len"].item()
    assert all(a.shape[0] == steps for a in out["aux_logits"])


@pytest.mark.parametrize("attention", [True, False])
def test_matches_conv3d_formulation_outputs_and_gradients(attention):
    model = tiny_model(hsa_attention=attention).double()
    with torch.no_grad():  # non-zero alpha so that the fusion blocks count
        model.conv2d.alpha.copy_(torch.tensor([0.5, -0.4, 0.3]))
    reference = conv3d_reference(model)
    x, len_x = video(2, 26, 40, torch.float64), torch.tensor([26, 21])
    label, label_lgt = labels([3, 2])
    for training in (True, False):
        model.train(training)
        reference.train(training)
        torch.manual_seed(1)  # same LSTM dropout masks in both
        ours = model(x, len_x)
        torch.manual_seed(1)
        theirs = reference(x, len_x)
        for key in ("conv_logits", "sequence_logits", "framewise_features", "loss_LiftPool_u",
                    "loss_LiftPool_p"):
            torch.testing.assert_close(ours[key], theirs[key], rtol=1e-10, atol=1e-10)
        for a, b in zip(ours["aux_logits"], theirs["aux_logits"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    model.train()
    reference.train()
    for m in (model, reference):
        torch.manual_seed(1)
        total_loss(m.loss_terms(m(x, len_x), label, label_lgt)).backward()
    theirs = dict(reference.named_parameters())
    for name, param in model.named_parameters():
        if param.grad is None:
            assert theirs[name].grad is None, name
            continue
        scale = max(1.0, theirs[name].grad.abs().max().item())
        torch.testing.assert_close(param.grad, theirs[name].grad, rtol=0, atol=1e-9 * scale,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_float32_fast_path_close_to_conv3d_formulation():
    model = tiny_model().eval()
    reference = conv3d_reference(model).eval()
    x, len_x = video(1, 20, 48), torch.tensor([20])
    with torch.no_grad():
        torch.testing.assert_close(model(x, len_x)["sequence_logits"],
                                   reference(x, len_x)["sequence_logits"], rtol=1e-4, atol=1e-4)


def test_every_loss_finite_and_every_parameter_gets_gradient():
    model = tiny_model().train()
    with torch.no_grad():
        model.conv2d.alpha.fill_(0.5)
    out = model(video(2, 36), torch.tensor([36, 30]))
    label, label_lgt = labels([3, 2])
    terms = model.loss_terms(out, label, label_lgt)
    assert list(terms) == ["SeqCTC", "AuxCTC0", "AuxCTC1", "AuxCTC2", "ConvCTC", "Dist", "Cu", "Cp"]
    for name, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    loss = total_loss(terms)
    torch.testing.assert_close(loss, sum(terms.values()))
    loss.backward()
    for name, param in model.named_parameters():
        if name.startswith("csa.conv1."):  # unused by the published forward; kept for loading
            assert param.grad is None
            continue
        assert param.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(param.grad).all(), name


def test_losses_follow_the_original_normalisation():
    model = tiny_model().train()
    out = model(video(2, 28), torch.tensor([28, 24]))
    label, label_lgt = labels([2, 2])
    terms = model.loss_terms(out, label, label_lgt)
    ctc = torch.nn.CTCLoss(reduction="none")
    expected = ctc(out["sequence_logits"].log_softmax(-1), label, out["feat_len"], label_lgt).mean()
    torch.testing.assert_close(terms["SeqCTC"], expected)
    # Dist: KL over every frame of the padded batch (T' * B rows), blank dropped, times T^2.
    student = (out["conv_logits"][..., 1:] / 8).log_softmax(-1).reshape(-1, NUM_CLASSES - 1)
    teacher = (out["sequence_logits"][..., 1:] / 8).softmax(-1).reshape(-1, NUM_CLASSES - 1)
    kl = (teacher * (teacher.log() - student)).sum() / student.shape[0] * 64
    torch.testing.assert_close(terms["Dist"], 25.0 * kl, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["Cu"], 0.0005 * out["loss_LiftPool_u"])


def test_adam_steps_lower_the_loss():
    model = tiny_model().train()
    x, len_x = video(2, 24), torch.tensor([24, 24])
    label, label_lgt = labels([2, 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        torch.manual_seed(0)
        loss = total_loss(model.loss_terms(model(x, len_x), label, label_lgt))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_hsa_attention_switch_and_loading_weights_across_it():
    with_att, without = tiny_model(hsa_attention=True), tiny_model(hsa_attention=False)
    keys_on, keys_off = set(with_att.state_dict()), set(without.state_dict())
    assert {k for k in keys_on - keys_off} == {k for k in keys_on if k.startswith("csa.stf")}
    assert any(k.startswith("csa.stf3.") for k in keys_on)
    without.load_state_dict(with_att.state_dict(), strict=True)  # stf* weights ignored
    with pytest.raises(RuntimeError, match="stf1"):
        with_att.load_state_dict(without.state_dict(), strict=True)
    out = without.eval()(video(1, 20), torch.tensor([20]))
    assert len(out["aux_logits"]) == 3


def test_model_takes_no_decoding_arguments():
    for removed in ({"gloss_dict": {"G1": [1, 1]}}, {"search_mode": "max"}, {"beam_width": 3}):
        with pytest.raises(TypeError):
            tiny_model(**removed)
    assert not hasattr(tiny_model(), "decoder")


def test_bf16_autocast_runs():
    model = tiny_model().train()
    label, label_lgt = labels([2, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(video(2, 24), torch.tensor([24, 22]))
        loss = total_loss(model.loss_terms(out, label, label_lgt))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()


def test_channels_last_off_gives_same_outputs():
    fast, plain = tiny_model(channels_last=True).eval(), tiny_model(channels_last=False).eval()
    x, len_x = video(1, 20), torch.tensor([20])
    with torch.no_grad():
        torch.testing.assert_close(fast(x, len_x)["sequence_logits"],
                                   plain(x, len_x)["sequence_logits"], rtol=1e-4, atol=1e-5)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="c2d_type"):
        SLRModel(5, "resnet50", 2)
    with pytest.raises(ValueError, match="conv_type"):
        SLRModel(5, "resnet18", 3, base_width=8)
    with pytest.raises(ConfigError, match=r"unknown key 'loss_weights.SeqCT'.*'SeqCTC'"):
        SLRModel(5, "resnet18", 2, base_width=8, loss_weights={"SeqCT": 1.0})
    model = tiny_model()
    with pytest.raises(ValueError, match="len_x"):
        model(video(1, 20), torch.tensor([21]))
    with pytest.raises(ValueError, match="too short"):
        model(video(1, 12), torch.tensor([12]))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        model(torch.zeros(1, 20, 1, 32, 32), torch.tensor([20]))
    with pytest.raises(RuntimeError, match="loss_weights"):
        tiny_model(loss_weights=None).loss_terms({}, torch.ones(1), torch.ones(1))


@pytest.mark.parametrize("size", [14, 28, 12])
def test_hsa_level_pooling_matches_the_original_two_steps(size):
    from modules.hsa import _pool_level
    frames = torch.randn(3, 5, size, size, dtype=torch.float64)
    original = torch.nn.functional.adaptive_avg_pool2d(frames, 7).mean(dim=(2, 3))
    torch.testing.assert_close(_pool_level(frames, adaptive=True), original, rtol=1e-12, atol=1e-12)


def test_eager_forward_classifies_the_bilstm_output_first():
    """As the original does: the call order sets the order in which autograd adds up the shared
    classifier's gradients, so eager training stays bit-identical to it (compiled runs may differ)."""
    model = tiny_model()
    bilstm_out, classified = [], []
    model.temporal_model.register_forward_hook(lambda module, args, out: bilstm_out.append(out))
    model.classifier.register_forward_hook(lambda module, args, out: classified.append(args[0]))
    model(video(2, 24), torch.tensor([24, 20]))
    # The temporal stack's own classifier call first, then the BiLSTM's, then the branch's three.
    assert len(classified) == 5 and classified[1] is bilstm_out[0]
