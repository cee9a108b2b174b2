"""Signer-independent splits for a table without them: `python -m preprocess.split --table PATH.csv
[--proportions 0.8 0.1 0.1] [--seed 0]` gives every signer's videos one split (no signer in two),
near the proportions of videos, and writes the table back with its `split` column filled."""
from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dataset.registry import SPLITS
from preprocess.common import PreprocessError, write_text_atomic
from preprocess.table import delimiter, read_rows
from utils.errors import run_cli


def assign_signers(videos_per_signer: Mapping[str, int], proportions: Sequence[float], seed: int) -> dict[str, str]:
    """Signer -> split: signers in a seeded random order, each to the split furthest below its share
    of the videos; every split gets a signer."""
    if len(videos_per_signer) < len(SPLITS):
        raise PreprocessError(f"{len(videos_per_signer)} signer(s) cannot make signer-independent "
                              f"{', '.join(SPLITS)} splits: each split needs a signer of its own")
    order = sorted(videos_per_signer)
    np.random.default_rng(seed).shuffle(order)
    total = sum(videos_per_signer.values())
    shares = np.asarray(proportions, dtype=float) / sum(proportions)
    assigned = np.zeros(len(SPLITS))
    split_of: dict[str, str] = {}
    for rank, signer in enumerate(order):
        left = len(order) - rank
        empty = [i for i in range(len(SPLITS)) if assigned[i] == 0]
        # the last signers go to splits that have none yet, so that no split stays empty
        choice = empty[0] if len(empty) >= left else int(np.argmax(shares * total - assigned))
        split_of[signer] = SPLITS[choice]
        assigned[choice] += videos_per_signer[signer]
    return split_of


def split_table(table: Path, proportions: Sequence[float], seed: int, replace: bool = False) -> list[str]:
    """Fill the table's split column by signer and write it back; returns the report lines."""
    header, rows = read_rows(table, required=("video", "signer"))
    if "split" in header and not replace and any(cells.get("split") for _line, cells in rows):
        raise PreprocessError(f"{table}: the split column is already filled; pass --replace to assign the "
                              f"splits again by signer")
    for line_no, cells in rows:
        if not cells["signer"]:
            raise PreprocessError(f"{table}:{line_no}: the signer cell is empty; every row needs its signer to "
                                  f"split by signer")
    counts = Counter(cells["signer"] for _line, cells in rows)
    split_of = assign_signers(counts, proportions, seed)
    columns = header if "split" in header else [*header, "split"]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter(table, header), lineterminator="\n")
    writer.writerow(columns)
    for _line, cells in rows:
        writer.writerow([split_of[cells["signer"]] if name == "split" else cells.get(name, "") for name in columns])
    write_text_atomic(table, out.getvalue())
    report = [f"wrote the split column of {table} (seed {seed}):"]
    for split in SPLITS:
        signers = sorted(signer for signer, s in split_of.items() if s == split)
        videos = sum(counts[signer] for signer in signers)
        listing = ", ".join(f"{signer} ({counts[signer]})" for signer in signers)
        report.append(f"  {split}: {videos} videos ({videos / len(rows):.0%}), {len(signers)} signers: {listing}")
    return report


def _proportion(value: str) -> float:
    """argparse type of --proportions: a positive number."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive share, got {value!r}")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the split helper."""
    parser = argparse.ArgumentParser(prog="python -m preprocess.split", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, help="the table (CSV or TSV with video and signer columns)")
    parser.add_argument("--proportions", type=_proportion, nargs=3, default=(0.8, 0.1, 0.1),
                        metavar=("TRAIN", "DEV", "TEST"), help="shares of the videos (default 0.8 0.1 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="the signers' random order (default 0)")
    parser.add_argument("--replace", action="store_true", help="assign again where the table has splits")
    args = parser.parse_args(argv)

    def run() -> None:
        for line in split_table(Path(args.table), args.proportions, args.seed, args.replace):
            print(line)

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
