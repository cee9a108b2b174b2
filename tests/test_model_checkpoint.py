"""Published-checkpoint compatibility of the STF-Net network."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from corrnet_network import CorrNetModel
from slr_network import SLRModel
from utils.checkpoint import load_checkpoint, model_state_from_checkpoint
from vac_network import VACModel

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


# The baselines' tables, built by their original code (tests/reference/family_original.py), with
# the published configuration each was released with.
FAMILY_TABLES = {
    "vac": (VACModel, dict(weight_norm=False, share_classifier=False), 154),
    "corrnet": (CorrNetModel, dict(weight_norm=True, share_classifier=True), 186),
}


@pytest.mark.parametrize("name", sorted(FAMILY_TABLES))
def test_baseline_state_dict_equals_published_key_table(name):
    cls, kwargs, entries = FAMILY_TABLES[name]
    published = read_key_table(KEY_TABLE.parent / f"{name}-state-dict-resnet18-1296.tsv")
    assert len(published) == entries
    model = cls(1296, "resnet18", 2, **kwargs)
    ours = [(k, tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]
    assert ours == published  # same keys, shapes, dtypes and order
    state = {f"module.{k}": torch.zeros(s, dtype=getattr(torch, d.split(".")[1]))
             for k, s, d in published}
    model.load_state_dict(model_state_from_checkpoint({"model_state_dict": state}), strict=True)


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
