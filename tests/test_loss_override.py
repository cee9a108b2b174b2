"""A researcher's loss change, trained by main.py: a subclass adding a term sees it logged."""
from __future__ import annotations

import csv
import re

import pytest

import main as main_module
from slr_network import SLRModel, register_model
from tests.train_support import make_tiny_dataset, tiny_config, write_config


@register_model
class L2SLRModel(SLRModel):
    """SLRModel plus an L2 penalty on the shared classifier, as a researcher would write it."""

    loss_names = SLRModel.loss_names + ("L2",)

    def loss_terms(self, outputs, labels, label_lengths):
        terms = super().loss_terms(outputs, labels, label_lengths)
        terms["L2"] = self.loss_weights.get("L2", 0.0) * self.classifier.weight.pow(2).sum()
        return terms


def test_a_subclass_adding_a_loss_term_trains_and_logs_it(tmp_path):
    data = make_tiny_dataset(tmp_path / "data")
    work = tmp_path / "work"
    # The config weights the new term, as it does the built-in ones.
    cfg = tiny_config(data, work, model="tests.test_loss_override.L2SLRModel", eval_splits=[],
                      loss_weights={"L2": 0.01})
    summary = main_module.main(["--config", str(write_config(cfg, tmp_path / "l2.yaml"))])
    assert summary["global_step"] == 4 and summary["skipped_batches"] == 0
    rows = list(csv.DictReader(open(work / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    log = (work / "log.txt").read_text()
    for row in rows:
        terms = {k[len("loss_"):]: float(v) for k, v in row.items() if k.startswith("loss_")}
        assert list(terms)[-1] == "L2" and terms["L2"] > 0
        # The trained loss is the sum of the logged terms, the new one included.
        assert float(row["loss"]) == pytest.approx(sum(terms.values()), rel=1e-4)
        line = re.search(rf"epoch {row['epoch']}: mean loss .*", log).group(0)
        assert f"L2 {terms['L2']:.4f}" in line, line


def test_an_unknown_loss_weight_is_one_line_naming_the_closest(tmp_path, capsys):
    data = make_tiny_dataset(tmp_path / "data")
    cfg = tiny_config(data, tmp_path / "work", eval_splits=[], loss_weights={"SeqCT": 1.0})
    assert main_module.cli(["--config", str(write_config(cfg, tmp_path / "typo.yaml"))]) != 0
    err = capsys.readouterr().err
    assert "error: unknown key 'loss_weights.SeqCT'; did you mean 'SeqCTC'?" in err and "Traceback" not in err
