"""`python -m preprocess --dataset NAME [options]`: the preprocessing of any dataset of the registry.

`--dataset table --table PATH.csv` prepares a dataset defined by one table (preprocess/table_cli.py),
`--dataset CSL --videos PATH` CSL from its .avi videos (preprocess/csl_videos.py); otherwise the four
downloads take the options of their `dataset_preprocess*.py` scripts (preprocess/cli.py), which
are aliases of this command under the original README's names. The dataset's registry entry is
resolved here, once, and handed down.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a file (the registry's preprocess_script): the repository root first
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset.registry import NAMES, dataset_spec  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch on --dataset; every other option goes to that dataset's command."""
    parser = argparse.ArgumentParser(prog="python -m preprocess", add_help=False,
                                     description="Prepare a dataset for training (--dataset NAME --help: its options).")
    parser.add_argument("--dataset", required=True, choices=NAMES)
    args, rest = parser.parse_known_args(argv)
    spec = dataset_spec(args.dataset)
    if spec.from_table:
        from preprocess import table_cli

        return table_cli.main(spec, rest)
    if spec.name == "CSL" and any(arg == "--videos" or arg.startswith("--videos=") for arg in rest):
        from preprocess import csl_videos

        return csl_videos.main(spec, rest)
    from preprocess.cli import preprocess

    return preprocess(spec, rest)


def alias(dataset: str, module: str) -> None:
    """What a preprocess/dataset_preprocess*.py script does: `--dataset dataset` and its options."""
    if module == "__main__":
        sys.exit(main(["--dataset", dataset, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
