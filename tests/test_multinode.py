"""Multi-node training as users launch it: one torchrun per node, c10d rendezvous (here 2 nodes
on localhost, gloo), against the same job as 2 processes of one node."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.test_main_train import data, free_port, run_two_processes  # noqa: F401 (fixture)
from tests.train_support import REPO_ROOT, tiny_config, write_config


def run_two_nodes(config: Path, timeout: int, **env: str) -> list[str]:
    """main.py under two `torchrun --nnodes 2 --nproc-per-node 1` agents (the nodes), meeting
    through c10d rendezvous on localhost; returns each node's output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), **env}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
               "--rdzv-id", "stfnet-multinode-test", "tests/train_main.py", "--config", str(config)]
    nodes = [subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        outputs = [node.communicate(timeout=timeout)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-4000:]
    return outputs


def test_two_nodes_agree_and_equal_two_processes_of_one_node(data, tmp_path):  # noqa: F811
    """An epoch of the tiny set (batch 1 per process: 2 steps) with SyncBatchNorm: both nodes hold
    the same weights and statistics at every step, and the saved model is bit-identical to the
    2-process single-node run's."""
    common = dict(eval_splits=[], num_epoch=1, save_interval=1, batch_size=1, sync_bn=True,
                  model="tests.train_support.WeightsDumpSLRModel")
    dump = tmp_path / "dump"
    dump.mkdir()
    multi = tiny_config(data, tmp_path / "nodes", **common)
    run_two_nodes(write_config(multi, tmp_path / "nodes.yaml"), timeout=300,
                  STFNET_TEST_DUMP=str(dump))
    single = tiny_config(data, tmp_path / "one_node", **common)
    run_two_processes(write_config(single, tmp_path / "one_node.yaml"), timeout=300)
    for forward in (1, 2):  # the initial weights, then the weights after the first step
        ranks = [torch.load(dump / f"rank{r}_forward{forward}.pt") for r in (0, 1)]
        assert ranks[0].keys() == ranks[1].keys()
        for key in ranks[0]:
            assert torch.equal(ranks[0][key], ranks[1][key]), (forward, key)
    assert not (dump / "rank0_forward3.pt").exists()  # one epoch: 2 steps per process
    a = torch.load(tmp_path / "nodes" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "one_node" / "last.pt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 2 and len(a["rng_state_per_rank"]) == 2
    assert a["model_state_dict"].keys() == b["model_state_dict"].keys()
    for key, value in a["model_state_dict"].items():
        assert torch.equal(value, b["model_state_dict"][key]), key
    # Not trivially equal: the two steps moved the weights away from the initial ones.
    start = torch.load(dump / "rank0_forward1.pt")
    assert any(not torch.equal(start[k], v) for k, v in a["model_state_dict"].items())
    log = (tmp_path / "nodes" / "log.txt").read_text()
    assert "world size 2" in log
