"""Build a gloss n-gram language model (ARPA) for beam-search fusion: decoding/build_lm.py's command.

    python preprocess/gloss_lm.py --annotations preprocess/phoenix2014/train_info.npy \\
        --out preprocess/phoenix2014/gloss-3gram.arpa [--order 3]
"""
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root
    import utils.installed  # noqa: F401  (first: without the requirements, one line on how to install)
    from decoding.build_lm import main

    sys.exit(main())
