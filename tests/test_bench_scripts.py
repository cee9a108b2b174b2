"""Every benchmark script still imports: a refactor that removes a name a bench uses fails here,
not on the day someone runs the bench."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_script_imports(script: str) -> None:
    """Import the script as a module; a script (not a helper module) has a guarded `main()`."""
    path = BENCH / script
    name = f"bench_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    if 'if __name__ == "__main__":' in path.read_text():
        assert callable(getattr(module, "main", None)), f"{script} has no main()"
