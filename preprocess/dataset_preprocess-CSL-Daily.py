"""CSL-Daily: `python -m preprocess --dataset CSL-Daily` under the original README's name."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository importable
from preprocess.__main__ import alias  # noqa: E402

alias("CSL-Daily", __name__)
