"""Shared pytest fixtures: the read-only reference folder beside the checkout, when present."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def isolated_torch_hub(tmp_path_factory) -> None:
    """torch's hub cache (ImageNet weights) in an empty folder: no test reads or fills the user's."""
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch_home"))


@pytest.fixture
def shared_dir() -> Path:
    """`../shared` beside the checkout; tests that need it skip cleanly when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"reference folder {SHARED_DIR} is absent")
    return SHARED_DIR


@pytest.fixture
def repo_root() -> Path:
    """The repository root, for tests that run the command-line scripts."""
    return REPO_ROOT


@pytest.fixture(scope="module")
def single_thread():
    """Tiny tensors gain nothing from threads, and OpenMP threads crawl on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def infer_assets(tmp_path_factory) -> dict:
    """A tiny trained model, its checkpoints and video (tests/infer_support.py), built once."""
    from tests.infer_support import make_assets

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return make_assets(tmp_path_factory.mktemp("infer"))
    finally:
        torch.set_num_threads(threads)
