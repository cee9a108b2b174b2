"""Frame convolutions and the temporal max pool: the reformulations equal what they replace."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from modules.frame_conv import FrameConv, store_frame_weights_channels_last
from modules.hsa import TemporalMaxPool
from tests.conftest import REPO_ROOT

# The stride-2 1x1 conv weight gradient on channels-last CPU frames (every ResNet downsample):
# oneDNN's kernel writes past its buffer; glibc's heap checks (MALLOC_CHECK_=3) abort on it.
_STRIDED_1X1_BACKWARD = """
import sys
sys.path.insert(0, {repo!r})
import torch, torch.nn.functional as F
from modules.frame_conv import FrameConv
torch.set_num_threads(1)
torch.manual_seed(0)
weight = torch.randn(8, 4, 1, 1, requires_grad=True)
for n in (72, 82, 76):
    x = torch.randn(n, 4, 16, 16).contiguous(memory_format=torch.channels_last)
    {conv}.square().sum().backward()
print("ok")
"""


def _heap_checked_run(conv: str) -> subprocess.CompletedProcess:
    """Run the strided 1x1 backward snippet with glibc's heap consistency checks."""
    code = _STRIDED_1X1_BACKWARD.format(repo=str(REPO_ROOT), conv=conv)
    return subprocess.run([sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=120,
                          env={"MALLOC_CHECK_": "3", "MALLOC_PERTURB_": "165",
                               "OMP_NUM_THREADS": "1", "PATH": ""})


def test_strided_1x1_frame_conv_backward_keeps_the_heap_intact():
    # The raw kernel is what FrameConv avoids; if a torch release fixes it, this says so.
    raw = _heap_checked_run("F.conv2d(x, weight, None, 2)")
    ours = _heap_checked_run("FrameConv(4, 8, 1, stride=2)(x)")
    assert ours.returncode == 0 and ours.stdout.strip() == "ok", ours.stderr[-500:]
    if raw.returncode == 0:
        # Seen with torch 2.13 on 2026-11-30, not on every machine since (oneDNN picks its kernel
        # by CPU): the workaround costs nothing measurable and is exact, so only a maintainer who
        # sees this skip on every machine should retire it.
        pytest.skip("the raw strided 1x1 weight gradient did not corrupt the heap on this machine (the "
                    "bug FrameConv avoids depends on the CPU: keep the workaround)")


@pytest.mark.parametrize("weights_channels_last", [True, False])
def test_strided_1x1_frame_conv_equals_the_strided_conv(single_thread, weights_channels_last):
    torch.manual_seed(0)
    conv = FrameConv(4, 8, 1, stride=2)
    if weights_channels_last:
        store_frame_weights_channels_last(conv)
    x = torch.randn(6, 4, 9, 10, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(6, 8, 5, 5, dtype=torch.float64)
    conv = conv.double()
    ours_x = x.clone().requires_grad_()
    out = conv(ours_x)
    (out * grad).sum().backward()
    # float64 reference: the plain strided conv on contiguous frames (a safe kernel).
    ref_x = x.contiguous().requires_grad_()
    ref_w = conv.weight.detach().squeeze(2).contiguous().requires_grad_()
    ref = F.conv2d(ref_x, ref_w, None, 2)
    (ref * grad).sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours_x.grad, ref_x.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conv.weight.grad.squeeze(2), ref_w.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("time", [7, 8, 23])
def test_temporal_max_pool_equals_max_pool1d_with_ties(time):
    # ReLU-like features tie often: the first maximum must get the gradient, as in max_pool1d.
    torch.manual_seed(time)
    base = torch.relu(torch.randn(3, 5, time)).round()
    grad = torch.randn(3, 5, time // 2)
    ours, ref = base.clone().requires_grad_(), base.clone().requires_grad_()
    out_ours, out_ref = TemporalMaxPool(2)(ours), torch.nn.MaxPool1d(2)(ref)
    (out_ours * grad).sum().backward()
    (out_ref * grad).sum().backward()
    assert torch.equal(out_ours, out_ref)
    assert torch.equal(ours.grad, ref.grad)
    with torch.no_grad():
        assert torch.equal(TemporalMaxPool(2)(base), torch.nn.MaxPool1d(2)(base))
