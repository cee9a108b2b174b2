"""Preprocess CSL: python preprocess/dataset_preprocess-CSL.py --dataset-root DIR [-p] [-m] [--pack]."""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from preprocess.cli import main  # noqa: E402

DATASET = "CSL"

if __name__ == "__main__":
    sys.exit(main(DATASET))
