"""Raw prediction inputs from files: an image, a ``.npy`` array or CSV rows (several files of
one kind, or a folder of images: :func:`input_files`).

Values come back as the dataset stores them (e.g. uint8 pixels ``(1, C, H, W)``), so the
run's saved preprocessing maps them to model inputs exactly as in training: images decode
through the same :func:`dlopt.data.image_8bit`, CSV cells through :func:`dlopt.data.cell_number`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dlopt.data import cell_number, channels_first, image_8bit
from dlopt.data._values import CsvRows, beyond_float32, infinite_cell, read_csv_rows
from dlopt.errors import DataError
from dlopt.registry import Entry, Registry

__all__ = ["check_finite", "check_raw_finite", "columns_by_name", "input_files", "is_image_file", "read_raw_input",
           "READERS"]

#: file suffix -> reader(path, input_shape[, *, categories]) -> np.ndarray
READERS: Registry[np.ndarray] = Registry("input file type", DataError)

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _read_image(path: Path, input_shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if len(input_shape) != 3:
        raise DataError(f"{path}: the model takes inputs of shape {input_shape}, not images")
    c, h, w = input_shape
    try:
        with Image.open(path) as img:
            img = image_8bit(img).convert("L" if c == 1 else "RGB")
            if img.size != (w, h):
                img = img.resize((w, h))
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, DataError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return arr[None]  # (1, C, H, W)


def _read_npy(path: Path, input_shape: tuple[int, ...], *, missing: bool | None = None,
              categories: Mapping[int, Sequence[str]] | None = None,
              columns: Sequence[str] | None = None) -> np.ndarray:
    if categories:  # a .npy holds no strings (no pickles): its numbers would all be unseen categories
        names = ", ".join(repr(columns[c]) if columns and c < len(columns) else str(c + 1) for c in sorted(categories))
        raise DataError(f"{path}: a .npy array holds numbers only, but the run has text column(s) {names}; "
                        "allowed: a CSV file with text in those columns")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty file
        raise DataError(f"cannot read {path} as a .npy array: {(str(exc).splitlines() or ['empty'])[0]}") from None
    if not isinstance(arr, np.ndarray):  # np.load opens any zip (.npz, torch.save files) as an archive
        arr.close()
        raise DataError(f"cannot read {path} as a .npy array: it is a zip archive (.npz?), not one array")
    check_raw_finite(arr, path, missing=missing)
    return channels_first(arr, input_shape)  # (N, H, W, C) images, as the npz reader takes them


_NAN_RULE = {True: ", or NaN for a missing value", False: " (the run imputes no missing values)",
             None: ", or NaN for a missing value where the run imputes them"}


def check_raw_finite(arr: np.ndarray, where: str | Path, *, missing: bool | None) -> None:
    """Refuse raw inputs (``where``: their file, or "input") holding Inf, or NaN unless the run
    imputes missing values (``missing``; None: not known, NaN judged after preprocessing), at
    the first bad index: after preprocessing the error could only count values never written."""
    if arr.dtype.kind != "f":
        return
    bad = np.isinf(arr) if missing is not False else ~np.isfinite(arr)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{where}: {arr[at]} at index {list(at)} ({int(bad.sum())} such value(s)); "
                        f"allowed: finite numbers{_NAN_RULE[missing]}")


def _read_csv(path: Path, input_shape: tuple[int, ...], *,
              categories: Mapping[int, Sequence[str]] | None = None,
              columns: Sequence[str] | None = None, missing: bool | None = None) -> np.ndarray:
    """Rows read as training read its CSV: cells stripped, a missing-value token is NaN.
    ``categories`` ({column: training values} of the text columns, None: not known) tells
    which columns keep their text. ``columns`` (the training CSV's feature names, None: not
    known) tells a header line exactly: one naming them all is dropped and its columns are
    taken by name (the target's, or any other, left out); without names a line none of whose
    cells could be data is a header. ``missing`` False (the run imputes nothing) refuses a
    missing cell at its line."""
    table = read_csv_rows(path, label="CSV")
    ragged = table.ragged()
    if ragged is not None:
        raise DataError(f"CSV {path} line {table.lines[ragged]}: {len(table.rows[ragged])} fields, "
                        f"line {table.lines[0]} has {len(table.rows[0])}")
    names, table = _without_header(table, categories, columns)
    if not table.rows:
        raise DataError(f"CSV {path} has no data rows")
    where = _Where(table, names, missing)
    if categories is None:
        return _guessed_table(table.rows, where)
    return _typed_table(table.rows, categories, where)


def _without_header(table: CsvRows, categories: Mapping[int, Sequence[str]] | None,
                    columns: Sequence[str] | None) -> tuple[list[str], CsvRows]:
    """``(names, table)`` past a header line: names are the run's columns when a header
    named them (its columns then taken by name), else []."""
    rows, path = table.rows, table.path
    if rows and columns and set(columns) <= set(rows[0]):
        return list(columns), replace(table.after_first(), rows=_by_name(rows, columns, path))
    if rows and _is_header(rows[0], categories):
        if columns:
            raise DataError(f"CSV {path} line {table.lines[0]} looks like a header but does not name the run's "
                            f"columns ({', '.join(columns)}); name them all, or leave the header out")
        all_text = bool(categories) and len(categories) >= len(rows[0])
        log.log(logging.WARNING if all_text else logging.INFO,
                "CSV %s: first row taken as a header (no value of it could be data): %s", path, ", ".join(rows[0]))
        return [], table.after_first()
    return [], table


def _by_name(rows: list[list[str]], columns: Sequence[str], path: Path) -> list[list[str]]:
    """The data rows under a header, their cells picked in the run's column order."""
    picks = columns_by_name(rows[0], columns, f"CSV {path}")
    return [[r[i] for i in picks] for r in rows[1:]]


def columns_by_name(header: Sequence[str], columns: Sequence[str], where: str) -> list[int]:
    """The positions in ``header`` of the run's feature ``columns``, in the run's order (a file
    may order them as it likes); ``where`` names the file. Other columns are left out, logged;
    a column of the run that ``header`` lacks is one :class:`DataError` line."""
    lacking = [c for c in columns if c not in header]
    if lacking:
        raise DataError(f"{where} has no column(s) {', '.join(map(repr, lacking))}; the run takes its features "
                        f"by name: {', '.join(columns)} (any order; other columns are left out)")
    extra = [h for h in header if h not in columns]
    if extra:
        log.info("%s: column(s) %s are not features of the run; left out", where, ", ".join(extra))
    return [list(header).index(name) for name in columns]


class _Where:
    """Where a cell is, for error lines: the file line, and the column by name when a header named it."""

    def __init__(self, table: CsvRows, names: list[str], missing: bool | None = None) -> None:
        self.table, self.names = table, names
        self.missing = missing  # whether the run imputes missing cells (None: not known)

    def cell(self, r: int, c: int) -> str:
        return self.table.where(r, repr(self.names[c]) if self.names else str(c + 1))


def _is_header(cells: list[str], categories: Mapping[int, Sequence[str]] | None) -> bool:
    """A row is a header when no cell of it could be data: a number or missing-value token
    where the run takes numbers, a value training saw in a text column. An empty cell proves
    nothing (pandas writes one above its index)."""
    known = categories or {}

    def data_like(c: int, v: str) -> bool:
        if c in known:
            return v in known[c]
        return v != "" and cell_number(v) is not None

    return any(cells) and not any(data_like(c, v) for c, v in enumerate(cells))


def _guessed_table(rows: list[list[str]], where: _Where) -> np.ndarray:
    """Numbers (missing -> NaN) when every cell is one, else the strings for a label encoding."""
    numbers = [[cell_number(v) for v in r] for r in rows]
    if all(f is not None for r in numbers for f in r):
        table = np.array(numbers, dtype=np.float64)
        beyond = beyond_float32(table)
        bad = np.argwhere(beyond | np.isnan(table) if where.missing is False else beyond)
        if len(bad):
            r, c = (int(i) for i in bad[0])
            _check_cell(table[r, c], rows[r][c], where, r, c)
        return table
    return np.array(rows, dtype=object)


def _check_cell(f: float, cell: str, where: _Where, r: int, c: int) -> None:
    # refused at its line and column, as the training CSV reader does, not later as
    # "N input values are NaN or infinite" for the whole file
    if beyond_float32(f):
        raise infinite_cell(cell, where.cell(r, c))
    if math.isnan(f) and where.missing is False:
        raise DataError(f"{where.cell(r, c)}: {cell!r} is a missing value, and the run imputes none; "
                        "allowed: finite numbers (a run trained with preprocess op impute fills them)")


def _typed_table(rows: list[list[str]], categories: Mapping[int, Sequence[str]], where: _Where) -> np.ndarray:
    """Text columns keep their strings (label_encode compares them as training saw them, "1" not
    "1.0"); the other columns must hold numbers or missing-value tokens."""
    table = np.array(rows, dtype=object)
    for c in range(table.shape[1]):
        if c in categories:
            continue
        for r, v in enumerate(table[:, c]):
            f = cell_number(v)
            if f is None:
                raise DataError(f"{where.cell(r, c)} holds {v!r}, not a number; the run takes numbers there "
                                "(a missing value: empty, NA, N/A, NaN, null or ?)")
            _check_cell(f, v, where, r, c)
            table[r, c] = f
    return table.astype(np.float64) if not categories else table


for _suffix in _IMAGE_SUFFIXES:
    READERS.register(_suffix)(_read_image)
READERS.register(".npy")(_read_npy)
READERS.register(".csv")(_read_csv)


def read_raw_input(path: str | Path, input_shape: tuple[int, ...], *,
                   categories: Mapping[int, Sequence[str]] | None = None,
                   columns: Sequence[str] | None = None, missing: bool | None = None) -> np.ndarray:
    """Raw inputs in ``path`` by its suffix (image, .npy, .csv). ``categories`` is the run's
    ``Preprocessor.categories`` (``{}`` for a run without one): it tells a CSV reader which
    columns hold text; None guesses. ``columns``, the run's ``Preprocessor.feature_names``,
    lets it tell a header line from data exactly and take a header's columns by name.
    ``missing`` (whether the run imputes missing values; None: not known) decides whether a
    NaN is refused where it is read. Infinite values always are, at their index or line.
    Channels-last images in a .npy, ``(N, H, W, C)``, come back as ``(N, C, H, W)``."""
    p = Path(path)
    entry = _reader(p)
    wanted = {"categories": categories, "columns": columns, "missing": missing}
    extra = {k: v for k, v in wanted.items() if k in entry.params()}
    return _checked(entry.factory(p, tuple(input_shape), **extra), p)


def _reader(p: Path) -> Entry[np.ndarray]:
    """The registry entry reading ``p``: an existing file of a known suffix, else one error line."""
    if not p.is_file():
        raise DataError(f"input file not found: {p}")
    return READERS.get(p.suffix.lower())


def is_image_file(path: str | Path) -> bool:
    """Whether ``path`` is read as an image (by its suffix): one sample per file."""
    return Path(path).suffix.lower() in _IMAGE_SUFFIXES


def input_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files ``paths`` name, a folder standing for the image files in it (sorted by name;
    sub-folders are not searched). Every file must exist, have a known suffix and be of one
    kind with the others: all images, all ``.npy`` arrays or all CSV files."""
    files = [f for p in map(Path, paths) for f in (_folder_images(p) if p.is_dir() else [p])]
    for f in files:
        _reader(f)
    other = next((f for f in files if _kind(f) != _kind(files[0])), None)
    if other is not None:
        raise DataError(f"inputs of mixed kinds ({files[0]}, {other}); allowed: all images, all .npy arrays "
                        "or all CSV files")
    return files


def _kind(f: Path) -> str:
    return "image" if is_image_file(f) else f.suffix.lower()


def _folder_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, by name; hidden and other files are left out (logged)."""
    entries = sorted((f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")),
                     key=lambda f: f.name)
    images = [f for f in entries if is_image_file(f)]
    if not images:
        raise DataError(f"{folder}: a folder without image files ({', '.join(_IMAGE_SUFFIXES)}); "
                        "its sub-folders are not searched")
    if len(images) < len(entries):
        log.warning("%s: %d file(s) that are not images left out (first: %s)", folder,
                    len(entries) - len(images), next(f.name for f in entries if not is_image_file(f)))
    return images


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
