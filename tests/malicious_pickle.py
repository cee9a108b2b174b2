"""A pickle payload that runs a shell command when unpickled: what a crafted checkpoint or .npy can do."""
from __future__ import annotations

import os
from pathlib import Path


class TouchesMarker:
    """Unpickles as os.system('touch <marker>'), so a test sees whether loading ran code."""

    def __init__(self, marker: str | Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)
