"""main.py with the test models registered: a user's own launcher script looks like this.

    torchrun --nproc_per_node 2 tests/train_main.py --config run.yaml
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import main  # noqa: E402
import tests.train_support  # noqa: E402,F401  (registers the test models)

if __name__ == "__main__":
    sys.exit(main.cli())
