"""Tune the LM weight and per-gloss bonus on a split's saved logits: decoding/tuning.py's command.

    python tune_lm.py --logits work_dir/x/eval/dev-logits.pt --lm-path gloss-3gram.arpa \\
        --stm preprocess/phoenix2014/phoenix2014-groundtruth-dev.stm --out work_dir/x/lm_tuning
"""
import utils.installed  # noqa: F401  (first: without the requirements, one line on how to install)
import sys

from decoding.tuning import main

if __name__ == "__main__":
    sys.exit(main())
