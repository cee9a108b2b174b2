"""bench/compile_loop.py: its loop feeds both copies the same weights, batches and seeds; its figures.

The always-run test replaces the compile by the module itself: the two copies must then train
bit-identically, which checks the harness (a difference there would be the harness's, not
inductor's). STFNET_COMPILE_TESTS=1 runs the dry run with inductor (minutes).
"""
from __future__ import annotations

import os

import pytest
import torch

from bench import compile_loop
from bench.compile_loop import StepRecord, summarize
from utils.compile import BACKEND_ENV


def record(eager_s: float, compiled_s: float, graphs: int = 0, loss: float = 2.0,
           compiled_loss: float = 2.0) -> StepRecord:
    """A step of given times, graphs and losses."""
    return StepRecord([40], 44, eager_s, compiled_s, loss, compiled_loss, loss * 1.0005, graphs,
                      graphs)


def test_summary_separates_compile_time_from_the_steady_steps():
    records = [record(1.0, 50.0, graphs=2), record(1.0, 0.9), record(1.2, 0.8),
               record(1.0, 20.5, graphs=1), record(1.1, 0.7, compiled_loss=2.002),
               record(0.9, 0.6)]
    s = summarize(records, warmup=2)
    # Steady: steps 2, 4, 5 (step 1 is warm-up, step 3 compiled); compiled median 0.7 s.
    assert s["steady_steps"] == 3
    assert s["compiled_step_s"] == pytest.approx(0.7) and s["eager_step_s"] == pytest.approx(1.1)
    assert s["compile_s"] == pytest.approx((50.0 - 0.7) + (20.5 - 0.7))
    assert s["ratio"] == pytest.approx(1.5)  # median of 1.5, 1.571, 1.5
    assert s["saving_per_step_s"] == pytest.approx(0.4)  # median of 0.4, 0.4, 0.3
    assert s["break_even_steps"] == pytest.approx(s["compile_s"] / 0.4)
    assert s["compiled_total_s"] == pytest.approx(73.5)
    assert s["compiled_total_without_compile_s"] == pytest.approx(73.5 - s["compile_s"])
    assert s["eager_total_s"] == pytest.approx(6.2)
    assert (s["dynamo_graphs_first"], s["dynamo_graphs_later"], s["inductor_graphs_later"]) == (2, 1, 1)
    assert s["max_rel_loss_diff"] == pytest.approx(0.001) and s["first_rel_loss_diff"] == 0.0
    assert s["max_rel_loss_diff_ulp"] == pytest.approx(0.0005)
    with pytest.raises(ValueError, match="run more steps"):
        summarize(records[:3], warmup=3)


def test_loop_trains_both_copies_identically_when_nothing_is_compiled(monkeypatch, capsys, single_thread):
    monkeypatch.setattr(compile_loop, "compile_for_training", lambda module, mode: module)
    case = compile_loop.cases(compile_loop.parse_args(["--dry-run", "--models", "demo",
                                                       "--steps", "4"]))[0]
    records, params = compile_loop.run_loop(case, "default", seed=0)
    assert len(records) == 4
    assert len({r.padded for r in records}) > 1, "the lengths should vary"
    for r in records:
        assert r.eager_loss == r.compiled_loss and torch.isfinite(torch.tensor(r.eager_loss))
        assert r.padded == max(r.frames) and len(r.frames) == case.batch
    assert params["compiled"] == {"max_abs": 0.0, "relative_to_update": 0.0}
    assert params["ulp"]["relative_to_update"] > 0.0  # the yardstick copy did part
    assert len({r.eager_loss for r in records}) == 4  # the weights and batches changed each step
    assert compile_loop.report(case, records, params, warmup=1, first_rtol=0.0, factor=1e-9)
    assert "first step within 0: yes" in capsys.readouterr().out


def test_the_yardstick_copy_is_one_ulp_away_everywhere():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    twin = compile_loop.one_ulp_away(model, seed=0)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        if a.is_floating_point():
            assert torch.equal(torch.nextafter(a, b), b) and bool((a != b).all()), name
            assert {True, False} <= set((b > a).flatten().tolist()), "both directions"
        else:
            assert torch.equal(a, b), name


@pytest.mark.skipif(os.environ.get("STFNET_COMPILE_TESTS") != "1",
                    reason="inductor compiles take minutes here: STFNET_COMPILE_TESTS=1")
def test_dry_run_with_inductor_compiles_few_graphs_and_matches_eager(monkeypatch, capsys):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert compile_loop.main(["--dry-run", "--models", "demo", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "compiled equals eager: first step within 1e-05: yes, loop's loss" in out
    assert "NO" not in out
    later = out.split("later: ")[1].split(" Dynamo")[0]
    assert int(later) <= 1, out  # at most one more graph over the new lengths
