"""Raw prediction inputs from files: an image, a ``.npy`` array or CSV rows.

Values come back as the dataset stores them (e.g. uint8 pixels ``(1, C, H, W)``), so the
run's saved preprocessing maps them to model inputs exactly as in training.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np

from dlopt.errors import DataError
from dlopt.registry import Registry

__all__ = ["check_finite", "read_raw_input", "READERS"]

#: file suffix -> reader(path, input_shape) -> np.ndarray
READERS: Registry[np.ndarray] = Registry("input file type", DataError)

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _read_image(path: Path, input_shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if len(input_shape) != 3:
        raise DataError(f"{path}: the model takes inputs of shape {input_shape}, not images")
    c, h, w = input_shape
    try:
        with Image.open(path) as img:
            img = img.convert("L" if c == 1 else "RGB")
            if img.size != (w, h):
                img = img.resize((w, h))
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return arr[None]  # (1, C, H, W)


def _read_npy(path: Path, input_shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty file
        raise DataError(f"cannot read {path} as a .npy array: {(str(exc).splitlines() or ['empty'])[0]}") from None
    if not isinstance(arr, np.ndarray):  # np.load opens any zip (.npz, torch.save files) as an archive
        arr.close()
        raise DataError(f"cannot read {path} as a .npy array: it is a zip archive (.npz?), not one array")
    return arr


def _number(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def _read_csv(path: Path, input_shape: tuple[int, ...]) -> np.ndarray:
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read CSV {path}: {exc}") from None
    if rows and all(_number(v) is None for v in rows[0]):
        rows = rows[1:]  # a header line
    if not rows:
        raise DataError(f"CSV {path} has no data rows")
    if len({len(r) for r in rows}) != 1:
        raise DataError(f"CSV {path}: rows have different numbers of columns")
    if all(_number(v) is not None for r in rows for v in r):
        return np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    return np.array(rows, dtype=object)  # text columns: the saved label encoding handles them


for _suffix in _IMAGE_SUFFIXES:
    READERS.register(_suffix)(_read_image)
READERS.register(".npy")(_read_npy)
READERS.register(".csv")(_read_csv)


def read_raw_input(path: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """Raw inputs in ``path`` by its suffix (image, .npy, .csv)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"input file not found: {p}")
    reader: Callable[[Path, tuple[int, ...]], np.ndarray] = READERS.get(p.suffix.lower()).factory
    return _checked(reader(p, tuple(input_shape)), p)


def _checked(x: np.ndarray, path: Path) -> np.ndarray:
    """Refuse what no preprocessing or model can take: no values, complex numbers. (NaN may be
    a missing value that the run's imputation fills: :func:`check_finite` judges after it.)"""
    if x.size == 0:
        raise DataError(f"{path}: no input values (array of shape {x.shape})")
    if x.dtype.kind == "c":
        raise DataError(f"{path}: complex values ({x.dtype}); allowed: real numbers")
    return x


def check_finite(x: np.ndarray) -> np.ndarray:
    """Model inputs after the saved preprocessing must be finite numbers."""
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(x.size - np.isfinite(x).sum())
        raise DataError(f"{bad} input value(s) are NaN or infinite after the run's preprocessing; "
                        "allowed: finite numbers (missing values need an imputation step)")
    return x
