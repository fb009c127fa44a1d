"""How raw CSV cells and decoded images become numbers. The dataset readers and ``dlopt
predict`` both call these, so a file reads the same way at training and at prediction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlopt.errors import DataError

__all__ = ["MISSING_TOKENS", "cell_number", "image_8bit"]

#: Cells read as a missing value (NaN) in a numeric column, compared after stripping spaces,
#: case-sensitive: pandas' default ``na_values`` plus ``?``, the UCI repository's marker
#: (e.g. adult), which is never a number, so reading it as missing loses nothing.
MISSING_TOKENS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "?",
})


def cell_number(v: str) -> float | None:
    """A CSV cell as a float: NaN for a missing-value token, None for text."""
    s = v.strip()
    if s in MISSING_TOKENS:
        return math.nan
    try:
        return float(s)
    except ValueError:
        return None


def image_8bit(im: Any) -> Any:
    """An opened Pillow image as 8-bit ``L`` (gray) or ``RGB``. Wider pixels are scaled, not
    clipped: 16/32-bit integers (0..65535) by 255/65535, float ones (0..1) by 255. Alpha is
    dropped (LA -> L, RGBA -> RGB); palette images are colour, so they become RGB.
    Raises :class:`DataError` for pixel values outside those ranges."""
    from PIL import Image

    mode = im.mode
    if mode in ("L", "RGB"):  # the common case (every request to the server): no copy
        return im
    if mode == "F" or mode.startswith("I"):
        return Image.fromarray(_wide_to_uint8(np.asarray(im), mode))
    if mode in ("1", "L", "LA", "La"):
        return im.convert("L")
    if mode in ("P", "PA") and ("transparency" in im.info or mode == "PA"):
        im = im.convert("RGBA")  # Pillow warns when a transparent palette goes straight to RGB
    try:
        return im.convert("RGB")
    except ValueError:  # e.g. LAB: Pillow has no conversion
        raise DataError(f"image mode {mode} cannot be converted to RGB; allowed: gray, RGB, palette, CMYK") from None


def _wide_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    top = 1.0 if mode == "F" else 65535.0
    vals = arr.astype(np.float64)
    finite = bool(np.isfinite(vals).all())
    if not finite or vals.min() < 0 or vals.max() > top:
        seen = f"{vals.min():g}..{vals.max():g}" if finite else "NaN/inf"
        raise DataError(f"{mode} pixel values {seen} outside 0..{top:g}; allowed: 8-bit, "
                        "16-bit (0..65535) or float (0..1) pixels")
    return np.rint(vals * (255.0 / top)).astype(np.uint8)
