"""Where each dataset's annotation files lie below its root, and their columns: what the readers
(preprocess/datasets.py) read and the synthetic generator (dataset/synthetic.py) writes, stated
here once."""
from __future__ import annotations

from pathlib import Path

PHOENIX2014_HEADER = ("id", "folder", "signer", "annotation")
PHOENIX2014T_HEADER = ("name", "video", "start", "end", "speaker", "orth", "translation")
CSL_DAILY_MAP_HEADER = ("index", "name", "length", "gloss", "char", "word", "postag")
CSL_DAILY_SPLIT_HEADER = ("name", "split")
TABLE_REQUIRED = ("video", "glosses", "split")  # a table dataset's columns (CSV or TSV)
TABLE_OPTIONAL = ("signer", "id")
PHOENIX_HEADERS = {"phoenix2014": PHOENIX2014_HEADER, "phoenix2014-T": PHOENIX2014T_HEADER}


def phoenix_corpus(root: Path, dataset: str, split: str) -> Path:
    """A PHOENIX release's annotation table of one split (PHOENIX-2014 or PHOENIX-2014-T)."""
    name = f"{split}.corpus.csv" if dataset == "phoenix2014" else f"PHOENIX-2014-T.{split}.corpus.csv"
    return root / "annotations" / "manual" / name


def csl_daily_map(root: Path) -> Path:
    """CSL-Daily's table of every video with its glosses."""
    return root / "sentence_label" / "video_map.txt"


def csl_daily_split_file(root: Path) -> Path:
    """CSL-Daily's video -> split table."""
    return root / "sentence_label" / "split_1.txt"


def csl_split_file(root: Path, split: str) -> Path:
    """CSL's split file as the original code ships it (one `<folder>|<glosses>` line per video)."""
    return root / f"{split}.txt"
