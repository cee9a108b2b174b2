"""The one reader of frame images (feeders, packing, the inference tools): a file as RGB uint8."""
from __future__ import annotations

import os

import cv2
import numpy as np

from utils.errors import BadFileError


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; a BadFileError naming the file when it is missing or
    does not decode. Bytes are read by NumPy and decoded by OpenCV because cv2.imread cannot open
    paths with non-ASCII characters on Windows."""
    try:
        data = np.fromfile(os.fspath(path), dtype=np.uint8)
    except OSError:
        data = np.empty(0, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise BadFileError(f"cannot read image {path} (missing or corrupt)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
