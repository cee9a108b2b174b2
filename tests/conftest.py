"""Shared pytest fixtures: the read-only reference folder beside the checkout, when present."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


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
