"""How raw CSV cells and decoded images become numbers. The dataset readers and ``dlopt
predict`` both call these, so a file reads the same way at training and at prediction.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dlopt.errors import DataError

__all__ = ["FLOAT32_MAX", "IMAGE_CHANNELS", "MISSING_TOKENS", "CsvRows", "beyond_float32", "cell_number",
           "channels_first", "image_8bit", "infinite_cell", "is_8bit", "pixel_range", "read_csv_rows",
           "scaled_pixels"]

#: The largest float32 magnitude: a CSV number beyond it is refused where it is read.
FLOAT32_MAX = float(np.finfo(np.float32).max)

#: Channel counts of an image sample (gray, RGB, RGBA): what a channels-last array may end with.
IMAGE_CHANNELS = (1, 3, 4)

#: Cells read as a missing value (NaN) in a numeric column, compared after stripping spaces,
#: case-sensitive: pandas' default ``na_values`` plus ``?``, the UCI repository's marker
#: (e.g. adult), which is never a number, so reading it as missing loses nothing.
MISSING_TOKENS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "?",
})


def cell_number(v: str) -> float | None:
    """A CSV cell as a float: NaN for a missing-value token, None for text. Python's ``float``
    also reads ``1_000`` and non-ASCII digits; pandas does not, and a code like ``10_3`` is no
    number 103, so those cells are text."""
    s = v.strip()
    if s in MISSING_TOKENS:
        return math.nan
    if "_" in s or not s.isascii():
        return None
    try:
        return float(s)
    except ValueError:
        return None


@dataclass(frozen=True)
class CsvRows:
    """A CSV file's non-empty rows, cells stripped, and the file line each row ends on (a
    quoted cell may span lines): an error names the line a bad value came from."""

    path: Path
    rows: list[list[str]]
    lines: list[int]
    label: str  # how error lines name the file ("csv file", "CSV")

    def where(self, r: int, column: str) -> str:
        """``'<label> <path> line <n>, column <column>'`` for row ``r``."""
        return f"{self.label} {self.path} line {self.lines[r]}, column {column}"

    def ragged(self) -> int | None:
        """The first row whose field count differs from the first row's, or None."""
        return next((i for i, r in enumerate(self.rows) if len(r) != len(self.rows[0])), None)

    def after_first(self) -> "CsvRows":
        """The rows after the first one (a header)."""
        return replace(self, rows=self.rows[1:], lines=self.lines[1:])


def read_csv_rows(path: Path, *, label: str = "csv file") -> CsvRows:
    """The rows of the CSV file ``path`` (UTF-8, with or without a byte-order mark); an
    unreadable file, or a quote left open to its end, is one :class:`DataError` line."""
    lines = _text_lines(path, label)
    reader = csv.reader(lines)
    read, start = [], 1  # start: the line the next row begins on
    try:
        for r in reader:
            if r:
                read.append((start, reader.line_num, [v.strip() for v in r]))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"malformed {label} {path} line {start}: {exc}") from None
    if read and _quote_left_open(lines[read[-1][0] - 1:]):
        raise DataError(f"{label} {path} line {read[-1][0]}: a quoted cell opened on this line is never closed, "
                        "so the rest of the file would be one cell; allowed: a cell in quotes ending with a "
                        'second quote (a quote inside it written twice, "")')
    return CsvRows(path, [r for _, _, r in read], [n for _, n, _ in read], label)


def _text_lines(path: Path, label: str) -> list[str]:
    """The file's lines as the csv module splits them (ends kept)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {label} {path}: {exc}") from None
    try:
        # utf-8-sig: Excel starts its CSV files with a byte-order mark, not part of the first cell
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        at = exc.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)  # counted after it
        line = data.count(b"\n", 0, at) + 1
        raise DataError(f"{label} {path} is not UTF-8 text: byte {at} (line {line}); save it as UTF-8") from None
    return io.StringIO(text, newline="").readlines()


def _quote_left_open(tail: list[str]) -> bool:
    """Whether the last row's lines ``tail`` end inside a quoted cell. The csv module then reads
    the rest of the file as that cell; only its strict mode says so, and strict mode would also
    refuse cells such as ``"a" b``, which pandas reads, so it judges the last row alone."""
    try:
        for _ in csv.reader(tail, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def beyond_float32(f: float | np.ndarray) -> bool | np.ndarray:
    """Whether a number (or each of an array's) is infinite or too large for float32 (``1e39``),
    the type the models compute in, where it would become infinite; NaN (a missing value) is not.
    Decided by the cast itself, so numpy's own text of the float32 max (``3.4028235e+38``), a
    hair above it in float64, is taken."""
    with np.errstate(over="ignore"):
        beyond = np.isinf(np.asarray(f, dtype=np.float64).astype(np.float32))
    return bool(beyond) if beyond.ndim == 0 else beyond


def infinite_cell(cell: str, where: str) -> DataError:
    """The error for a cell of a numeric column that reads as an infinite number (``inf``,
    ``-Infinity``, ``1e999``) or one beyond float32 (:func:`beyond_float32`): no scaler or model
    can take one, and the fault is found here, at its row, not later as "non-finite inputs" in
    the whole set."""
    s = cell.strip()
    what = ("is not a finite number" if math.isinf(float(s)) else
            f"is beyond float32 (largest magnitude {FLOAT32_MAX:.4g}), the type models compute in")
    return DataError(f"{where}: {s!r} {what}; allowed: finite numbers, or for a missing value an empty cell or a "
                     "missing-value token (NA, N/A, NaN, null, ?, ...)")


def channels_first(x: np.ndarray, sample_shape: tuple[int, ...]) -> np.ndarray:
    """``x`` with channels-last image samples ``(..., H, W, C)`` moved to the ``(C, H, W)`` of
    ``sample_shape`` (a run trained on channels-last arrays takes its inputs in that layout too);
    anything else as it is, for the shape checks that follow."""
    if len(sample_shape) != 3 or sample_shape[0] not in IMAGE_CHANNELS or x.ndim < 3:
        return x
    c, h, w = sample_shape
    if tuple(x.shape[-3:]) == (h, w, c) and (h, w, c) != (c, h, w):
        return np.moveaxis(x, -1, -3)
    return x


def pixel_range(x: np.ndarray, *more: np.ndarray | None) -> tuple[int, int] | None:
    """Bounds (min, max) of the integer image arrays ``x`` and ``more``; None when ``x`` holds
    no integers (float images are taken as they are, booleans are no pixels). uint8 arrays are
    not scanned: their dtype is their range (MNIST is read on every load)."""
    if x.dtype.kind not in "iu":
        return None
    filled = [a for a in (x, *more) if a is not None and a.dtype.kind in "iu" and a.size]
    if not filled:
        return None
    if all(a.dtype == np.uint8 for a in filled):
        return 0, 255
    return min(int(a.min()) for a in filled), max(int(a.max()) for a in filled)


def is_8bit(pixels: tuple[int, int] | None) -> bool:
    """Integer values all within 0..255: 8-bit pixels, whatever the dtype."""
    return pixels is not None and pixels[0] >= 0 and pixels[1] <= 255


def _pixel_divisor(pixels: tuple[int, int] | None, where: str) -> float:
    """The divisor that maps integer images to [0, 1] as image files are read (:func:`image_8bit`):
    0..255 by 255, else 0..65535 by 65535; 0 (no scaling) for float images."""
    if pixels is None:
        return 0.0
    if is_8bit(pixels):
        return 255.0
    lo, hi = pixels
    if lo >= 0 and hi <= 65535:
        return 65535.0
    raise DataError(f"{where}: integer images hold values {lo}..{hi}; allowed: 8-bit (0..255) or "
                    "16-bit (0..65535) pixels, or a float array, which is taken as it is")


def scaled_pixels(x: np.ndarray, x_test: np.ndarray | None, where: str,
                  ) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Image arrays ``x``/``x_test`` and the divisor mapping them to [0, 1]
    (:func:`_pixel_divisor`; ``where`` names them in its error). 8-bit integer pixels come back
    as uint8, the images' fast path (no copy when they already are)."""
    scale = _pixel_divisor(pixel_range(x, x_test), where)
    if scale == 255.0:
        x, x_test = _as_uint8(x), _as_uint8(x_test)
    return x, x_test, scale


def _as_uint8(a: np.ndarray | None) -> np.ndarray | None:
    # integers only: a float x_test beside integer x stays float, for the dtype check to refuse
    return a if a is None or a.dtype.kind not in "iu" else a.astype(np.uint8, copy=False)


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
