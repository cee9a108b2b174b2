"""Build a gloss n-gram language model (ARPA) from a split's annotations, for beam-search fusion.

    python preprocess/gloss_lm.py --annotations preprocess/phoenix2014/train_info.npy \\
        --out preprocess/phoenix2014/gloss-3gram.arpa [--order 3]

Annotations: a ``<split>_info.npy`` written by the dataset scripts, a ground-truth ``.stm``, or a
text file with one sentence per line. Interpolated modified Kneser-Ney as KenLM's lmplz
(``utils.lm``); the ARPA file is what ``decode_args.lm_path`` / ``--lm-path`` take.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.errors import MissingFileError, run_cli  # noqa: E402
from utils.lm import estimate_kneser_ney  # noqa: E402


def read_sentences(path: str | os.PathLike) -> list[list[str]]:
    """Gloss sentences of a split: a `<split>_info.npy` from preprocess/, an STM, or plain text."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"annotations {path} not found (a <split>_info.npy written by "
                               f"preprocess/, a ground-truth .stm, or one sentence per line)")
    if path.suffix == ".npy":
        from dataset.feeder import load_info

        return [str(entry["label"]).split() for entry in load_info(path)]
    if path.suffix == ".stm":
        from evaluation.stm import read_stm

        return [list(segment.words) for segment in read_stm(path)]
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Build the ARPA model; 2 with an `error:` line on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--annotations", nargs="+", required=True,
                        help="train_info.npy (preprocess/ output), a .stm, or a text file of sentences")
    parser.add_argument("--out", required=True, help="ARPA file to write")
    parser.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    args = parser.parse_args(argv)
    return run_cli(lambda: build(args))


def build(args: argparse.Namespace) -> None:
    """Estimate the model from the annotations named on the command line and write it."""
    sentences = [s for path in args.annotations for s in read_sentences(path)]
    model = estimate_kneser_ney(sentences, args.order)
    model.write_arpa(args.out)
    sizes = ", ".join(f"{sum(1 for g in model.probs if len(g) == n)} {n}-grams"
                      for n in range(1, model.order + 1))
    print(f"wrote {args.out}: {len(sentences)} sentences, {sizes}")


if __name__ == "__main__":
    sys.exit(main())
