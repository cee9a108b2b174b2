"""Text on images with glyphs for every gloss: CSL-Daily glosses are Chinese, and OpenCV's
Hershey fonts print them as '?'. Text is drawn with Pillow in a font that has CJK glyphs."""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_ENV = "STFNET_FONT"  # a .ttf/.ttc/.otf path that wins over the search below
CJK_FONTS = (  # Debian packages first: .ci/run installs fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # fonts-noto-cjk
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/truetype/arphic/uming.ttc",  # fonts-arphic-uming
    "/System/Library/Fonts/PingFang.ttc",  # macOS
    "C:/Windows/Fonts/msyh.ttc",  # Windows
)
NO_FONT_HINT = ("no font with CJK glyphs found (looked for ${FONT_ENV} and {paths}); Chinese glosses "
                "will show as empty boxes. Install one (Debian: apt-get install fonts-wqy-microhei) "
                "or set {env}=/path/to/font.ttc")


def find_cjk_font() -> Path | None:
    """The first readable font file with CJK glyphs: $STFNET_FONT, then the known locations."""
    override = os.environ.get(FONT_ENV)
    for candidate in ([override] if override else []) + list(CJK_FONTS):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


@functools.lru_cache(maxsize=16)
def load_font(size: int) -> ImageFont.ImageFont:
    """The CJK font at `size` pixels, or Pillow's default font with a warning naming the fix."""
    path = find_cjk_font()
    if path is not None:
        try:
            return ImageFont.truetype(str(path), size)
        except OSError as exc:
            warnings.warn(f"cannot load font {path}: {exc}", stacklevel=2)
    warnings.warn(NO_FONT_HINT.format(FONT_ENV=FONT_ENV, paths=", ".join(CJK_FONTS), env=FONT_ENV),
                  stacklevel=2)
    return ImageFont.load_default(size)


def draw_text(image: np.ndarray, text: str, origin: tuple[int, int], size: int,
              colour: tuple[int, int, int]) -> None:
    """Write text (top-left at `origin`) in place on an RGB uint8 image, outlined in black."""
    canvas = Image.fromarray(image)
    ImageDraw.Draw(canvas).text(origin, text, font=load_font(size), fill=colour,
                                stroke_width=max(1, size // 8), stroke_fill=(0, 0, 0))
    image[...] = np.asarray(canvas)
