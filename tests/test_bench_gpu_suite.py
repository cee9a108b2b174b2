"""bench/gpu_suite.py: the CPU dry run goes through every section; the time budget is enforced."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import pytest

from bench import gpu_suite
from tests.train_support import REPO_ROOT


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_suite")
    # Generous budgets: the dry run takes about a minute on an idle 2-core CPU, far more on a
    # shared one, and the budget logic has its own tests below.
    proc = subprocess.run([sys.executable, "bench/gpu_suite.py", str(out), "--dry-run",
                           "--budget-scale", "10"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "gpu_suite.json").read_text()), (out / "gpu_suite.md").read_text()


def test_dry_run_measures_every_section(dry_run):
    report, _ = dry_run
    sizes, sections = gpu_suite.DRY, report["sections"]
    assert report["sizes"]["budgets"] == {n: 10 * b for n, b in sizes.budgets.items()}
    assert report["dry_run"] and report["machine"]["device"] == "cpu"
    assert {name: s["status"] for name, s in sections.items()} == {n: "done" for n in gpu_suite.SECTIONS}
    assert report["wall_s"] <= report["budget_s"]
    rows = sections["step"]["rows"]
    assert [(r["frames"], r["precision"]) for r in rows] == [
        (t, p) for t in sizes.lengths for p in gpu_suite.PRECISIONS]
    for row in rows:
        for name in (gpu_suite.OURS, gpu_suite.ORIGINAL):
            assert len(row[name]["runs_s"]) == sizes.steps and row[name]["s"] > 0
            assert row[name]["peak_bytes"] is None  # no GPU memory on the CPU
        assert row["ours_fps"] == pytest.approx(sizes.batch * row["frames"] / row["ours"]["s"])
    assert sections["decode"]["devices"] == ["cpu"]
    assert set(sections["decode"]["rates"]) == {"none", "3-gram"}
    assert all(r["cpu"] > 0 for r in sections["decode"]["rates"].values())
    loader = sections["loader"]
    assert set(loader["paths"]) == {"PNG frames", "JPEG pack"} and loader["videos"] == 4
    assert all(fps > 0 for fps in loader["paths"].values())
    longest = [r for r in rows if r["frames"] == max(sizes.lengths)]
    assert report["workers"]["PNG frames"] == [
        gpu_suite.workers_needed(r["ours_fps"], loader["paths"]["PNG frames"]) for r in longest]
    for name, bucket in (("compile_default", 1), ("compile_reduce_overhead", sizes.bucket)):
        c = sections[name]
        assert c["backend"] == "eager" and c["bucket"] == bucket and c["compile_s"] > 0
        assert c["eager_s"] > 0 and c["compiled_s"] > 0 and c["graphs_first"] >= 1
        assert [r["frames"] for r in c["lengths"]] == list(sizes.compile_lengths[1:])
        assert all(r["padded"] % bucket == 0 and r["padded"] >= r["frames"] for r in c["lengths"])
        # Dynamo's graph is dynamic in the time length: new lengths capture nothing new.
        assert all(r["new_graphs"] == 0 for r in c["lengths"])


def test_dry_run_markdown_has_every_table(dry_run):
    _, text = dry_run
    assert "Dry run on the CPU" in text
    for heading in ("## Training step", "## Loader", "## Beam search", "## torch.compile mode=default",
                    "## torch.compile mode=reduce-overhead"):
        assert heading in text
    assert text.count("| 32 | ") == len(gpu_suite.PRECISIONS)


def test_sections_share_unused_budget_and_are_skipped_when_it_is_spent():
    budgets = {"a": 10.0, "b": 10.0, "c": 10.0}
    assert gpu_suite.section_timeouts(budgets, 30.0, 4.0, {"a": 4.0}, "b") == 16.0
    assert gpu_suite.section_timeouts(budgets, 30.0, 25.0, {"a": 4.0, "b": 21.0}, "c") == 5.0
    given = {}

    def runner(name: str, timeout: float) -> dict:
        given[name] = timeout
        time.sleep(0.3 if name == "a" else 0.0)
        return {"status": "done"}

    results = gpu_suite.run_sections(["a", "b", "c"], budgets, 0.2, runner, min_s=0.05)
    assert given == {"a": pytest.approx(0.2, abs=0.05)}
    assert results["a"]["status"] == "done"
    assert results["b"]["status"].startswith("skipped") and results["c"]["status"].startswith("skipped")


def test_a_section_past_its_time_is_killed_and_recorded(tmp_path):
    args = argparse.Namespace(out=tmp_path, dry_run=True, device="cpu")
    began = time.monotonic()
    result = gpu_suite.section_runner(args)("decode", 0.5)
    assert time.monotonic() - began < 10
    assert result["status"].startswith("timed out after")


def test_no_budget_writes_a_report_of_skipped_sections(tmp_path):
    assert gpu_suite.main([str(tmp_path), "--dry-run", "--budget-s", "0"]) == 0
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert all(s["status"].startswith("skipped") for s in report["sections"].values())
    assert "| step | skipped" in (tmp_path / "gpu_suite.md").read_text()
