"""User data formats, named ``<format>:<path>``: npz, csv, imagefolder and idx.

Every reader checks what it reads and raises a one-line :class:`DataError` naming the file
and the fault. Image folders get a preflight over every file before training starts.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from dlopt.data._builtin import idx_raw
from dlopt.data._raw import RawData
from dlopt.data._registry import FORMATS, split_format
from dlopt.data._values import (
    IMAGE_CHANNELS, CsvRows, beyond_float32, cell_number, image_8bit, infinite_cell, is_8bit, pixel_range,
    read_csv_rows, scaled_pixels,
)
from dlopt.errors import DataError

log = logging.getLogger(__name__)

# Integer-valued csv targets with at most this many distinct values are class labels; more
# are read as a regression target, with a warning (a year or a count is rarely 60 classes).
MAX_CSV_CLASSES = 50


def absolute_source(name: str) -> str:
    """``<format>:<path>`` with its path absolute (``~`` expanded), as the readers resolve it
    against the working directory; other names as given. What a written config records: a
    relative path re-read from another directory names another file."""
    fmt = split_format(name)
    if fmt is None or fmt[0] not in FORMATS or not fmt[1]:
        return name
    return f"{fmt[0]}:{os.path.abspath(Path(fmt[1]).expanduser())}"


def _existing(path: str | Path, *, directory: bool = False) -> Path:
    p = Path(path).expanduser()
    ok = p.is_dir() if directory else p.is_file()
    if not ok:
        # a relative path is read from the working directory: say which, it is rarely obvious
        where = "" if p.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        want, other = ("directory", "file") if directory else ("file", "directory")
        if p.exists():
            raise DataError(f"{p}{where} is a {other}, not a {want}")
        raise DataError(f"missing {want}: {p}{where}")
    return p


# -------------------------------------------------------------------------------------- npz
@FORMATS.register("npz", help="numpy .npz with arrays x, y (optional x_test, y_test, class_names)",
                  labels="array 'y'")
def read_npz(*, path: str) -> RawData:
    """Arrays ``x``/``y`` (and optionally ``x_test``/``y_test``, ``class_names``) from an .npz."""
    p = _existing(path)
    arrays = _npz_arrays(p)
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"npz file {p} lacks array {key!r} (has: {', '.join(sorted(arrays)) or 'none'})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"npz file {p} must hold both x_test and y_test, or neither")
    names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else []
    (x, x_test), kind, scale = _npz_inputs(arrays["x"], arrays.get("x_test"), p)
    y, y_test = _npz_labels(arrays, p)
    task = "regression" if np.issubdtype(y.dtype, np.floating) and not names else "classification"
    if y.dtype.kind in "US":  # string labels: class ids are their sorted order
        names = sorted({str(v) for v in y} | ({str(v) for v in y_test} if y_test is not None else set()))
        lookup = {n: i for i, n in enumerate(names)}
        y = np.array([lookup[str(v)] for v in y], dtype=np.int64)
        y_test = None if y_test is None else np.array([lookup[str(v)] for v in y_test], dtype=np.int64)
    return RawData(
        x=x, y=y, x_test=x_test, y_test=y_test, task=task, kind=kind, source=str(p),
        class_names=names, scale=scale, num_classes=len(names) or None,
    )


def _npz_arrays(p: Path) -> dict[str, np.ndarray]:
    try:
        magic = _magic(p)
        if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # np.load reads a non-zip as .npy or pickle
            what = "is a single .npy array, not" if magic == b"\x93NUMPY" else "is not"
            raise DataError(f"npz file {p} {what} an .npz archive (a zip file of named arrays); "
                            f"save one with np.savez(path, x=..., y=...)")
        with np.load(p, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ValueError as exc:
        # numpy says "Object arrays cannot be loaded when allow_pickle=False"
        raise DataError(f"cannot read npz file {p}: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"corrupt npz file {p}: {exc.__class__.__name__}: {exc}") from None


def _magic(p: Path) -> bytes:
    """The first bytes of ``p``: a zip archive (.npz) and a .npy array start with their own."""
    with open(p, "rb") as f:
        return f.read(6)


def _npz_labels(arrays: dict[str, np.ndarray], p: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``y`` and ``y_test`` as 1-D arrays of one kind (a (N, 1) column is flattened)."""
    labels = {key: _npz_label_column(arrays[key], p, key) for key in ("y", "y_test") if key in arrays}
    kinds = {key: _label_kind(y) for key, y in labels.items()}
    if len(set(kinds.values())) > 1:
        # the task and class names are read from y alone: mixed kinds would be misread
        raise DataError(f"npz file {p}: y holds {kinds['y']} labels but y_test holds {kinds['y_test']} "
                        f"labels; both splits need one kind (class indices, strings or float targets)")
    return labels["y"], labels.get("y_test")


def _npz_label_column(y: np.ndarray, p: Path, key: str) -> np.ndarray:
    if y.dtype.kind not in "biufUS":
        raise DataError(f"npz file {p}: array {key!r} has dtype {y.dtype}, expected numbers or strings")
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if y.ndim != 1:
        hint = f"; for one-hot labels pass class indices, e.g. {key}.argmax(1)" if y.ndim == 2 else ""
        raise DataError(f"npz file {p}: array {key!r} has shape {y.shape}, "
                        f"expected one label per sample, shape (N,){hint}")
    return y


def _label_kind(y: np.ndarray) -> str:
    return "string" if y.dtype.kind in "US" else "float" if y.dtype.kind == "f" else "integer"


def _npz_inputs(x: np.ndarray, x_test: np.ndarray | None, p: Path,
                ) -> tuple[tuple[np.ndarray, np.ndarray | None], str, float]:
    """``x`` and ``x_test`` shaped alike as images (N,C,H,W), sequences (N,C,L) or a table
    (N,F), with the divisor of their pixels; ``x`` decides the layout for both."""
    pair = {"x": x, "x_test": x_test}
    for key, a in pair.items():
        if a is not None and a.dtype.kind not in "biuf":
            raise DataError(f"npz file {p}: array {key!r} has dtype {a.dtype}, expected numbers")
        if a is not None and not 1 <= a.ndim <= 4:
            raise DataError(f"npz file {p}: array {key!r} has {a.ndim} dimensions, expected 1 to 4")
    if x.ndim <= 2:
        x, x_test = (a if a is None or a.ndim != 1 else a[:, None] for a in (x, x_test))
        return (x, x_test), "tabular", 0.0
    if x.ndim == 3 and not _gray_images(x, pixel_range(x, x_test)):
        return (x, x_test), "sequence", 0.0
    if x.ndim == 3:  # 8-bit integers (N, H, W): grayscale images, as IDX files hold them
        pair = {k: (a if a is None or a.ndim != 3 else a[:, None]) for k, a in pair.items()}
    elif _channels_last(x.shape):
        log.info("npz file %s: x of shape %s read as channels-last images (N, H, W, C)", p, x.shape)
        pair = {k: (a if a is None or a.ndim != 4 else a.transpose(0, 3, 1, 2)) for k, a in pair.items()}
    x, x_test, scale = scaled_pixels(pair["x"], pair["x_test"], f"npz file {p}")
    return (x, x_test), "image", scale


def _gray_images(x: np.ndarray, pixels: tuple[int, int] | None) -> bool:
    """(N, H, W) integers as grayscale images: uint8, or wider integers within 0..255 that are
    not binary. Floats, integers beyond 8 bits (int16 audio) and 0/1 arrays (one-hot or binary
    sequences) stay sequences."""
    return x.dtype == np.uint8 or (is_8bit(pixels) and pixels is not None and pixels[1] > 1)


def _channels_last(shape: tuple[int, ...]) -> bool:
    """(N, H, W, C): the last axis is a channel count (1, 3, 4) and the second is too long to be
    one. Both plausible, e.g. (N, 3, 8, 3), reads as channels-first (N, C, H, W)."""
    return shape[3] in IMAGE_CHANNELS and shape[1] > max(IMAGE_CHANNELS)


# -------------------------------------------------------------------------------------- csv
@FORMATS.register("csv", help="csv with a header row; data.target names the target column")
def read_csv(*, path: str, target: str | None = None) -> RawData:
    """A table with a header row; ``target`` names the label/target column. In numeric
    columns an empty cell or a token of ``dlopt.data.MISSING_TOKENS`` (NA, N/A, NaN, null, ?, ...)
    is a missing value (NaN)."""
    p = _existing(path)
    header, table = _csv_table(p)
    if target is None:
        raise DataError(f"csv file {p}: set data.target to the target column, one of: {', '.join(header)}")
    if target not in header:
        raise DataError(f"csv file {p}: no column {target!r}; columns: {', '.join(header)}")
    t = header.index(target)
    features = [h for i, h in enumerate(header) if i != t]
    if not features:
        raise DataError(f"csv file {p}: no feature columns besides target {target!r}")
    cols = list(zip(*table.rows))
    y, task, names = _csv_target(cols[t], table, target)
    columns = [_csv_column(cols[i], table, header[i]) for i in range(len(header)) if i != t]
    numeric = all(c.dtype != object for c in columns)
    x = np.stack(columns, axis=1) if numeric else np.stack([c.astype(object) for c in columns], axis=1)
    return RawData(
        x=x, y=y, task=task, kind="tabular", source=str(p), class_names=names,
        feature_names=features, num_classes=len(names) or None,
    )


def _csv_table(p: Path) -> tuple[list[str], CsvRows]:
    """The header and the data rows (cells stripped, each with the line it ends on)."""
    table = read_csv_rows(p)
    if not table.rows:
        raise DataError(f"empty dataset: csv file {p} has no header row")
    header = _unique_names(table.rows[0], p)
    ragged = table.ragged()
    if ragged is not None:
        raise DataError(f"csv file {p} line {table.lines[ragged]}: {len(table.rows[ragged])} fields, "
                        f"header has {len(header)}")
    if len(table.rows) == 1:
        raise DataError(f"empty dataset: csv file {p} has no data rows")
    return header, table.after_first()


def _unique_names(header: list[str], p: Path) -> list[str]:
    """Columns are found by name: a repeated one would leave a copy of the target among the
    features. A nameless column is refused too: pandas writes its row index as one, a feature
    that ranks rows (a file sorted by class leaks its labels through it)."""
    seps = [sep for sep in (";", "\t", "|") if len(header) == 1 and sep in header[0]]
    if seps:  # one column can hold no target and a feature: the file is not comma-separated
        raise DataError(f"csv file {p}: the header is one column {header[0]!r}; fields must be separated "
                        f"by commas (this file seems to use {seps[0]!r})")
    if "" in header:
        raise DataError(f"csv file {p}: column {header.index('') + 1} has no name; each column needs one "
                        "(a nameless first column is pandas' row index: write the file with "
                        "to_csv(index=False))")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(f"csv file {p}: duplicate column name(s) {', '.join(map(repr, repeated))}; "
                        "each column needs its own name")
    return header


def _csv_column(values: tuple[str, ...], table: CsvRows, name: str) -> np.ndarray:
    """float64 when every cell is a number or a missing-value token (-> NaN), else the strings.
    Numbers with a few text cells are refused: label_encode would code them in string order."""
    floats = [cell_number(v) for v in values]
    text = [v for v, f in zip(values, floats) if f is None]
    if not text:
        return _finite_column(floats, values, table, name)
    if sum(1 for f in floats if f is not None and not math.isnan(f)) > len(text):
        raise DataError(f"csv file {table.path}: column {name!r} holds numbers but {len(text)} cell(s) are "
                        f"text, e.g. {text[0]!r}; allowed: numbers, and for a missing value an empty cell "
                        "or a missing-value token (NA, N/A, NaN, null, ?, ...; see docs/data.md); "
                        "a column of categories needs text values (e.g. c10 for 10)")
    return np.asarray(values, dtype=object)


def _csv_target(values: tuple[str, ...], table: CsvRows, name: str) -> tuple[np.ndarray, str, list[str]]:
    """Numeric non-integer (or many-valued) targets are regression; the rest are classes."""
    floats = [cell_number(v) for v in values]
    _check_target_cells(values, floats, table, name)
    if any(f is None for f in floats):  # text labels are class names
        labels = list(values)
        order = sorted(set(labels))
    else:
        col = _finite_column(floats, values, table, name)
        if not _integer_classes(col, table.path, name):
            return col.astype(np.float32), "regression", []
        labels = [str(int(v)) for v in col]
        order = sorted(set(labels), key=int)
    lookup = {n: i for i, n in enumerate(order)}
    return np.array([lookup[v] for v in labels], dtype=np.int64), "classification", order


def _check_target_cells(values: tuple[str, ...], floats: list[float | None], table: CsvRows, name: str) -> None:
    """Every row needs a target: an empty cell or a missing-value token is refused, in a text
    target too (it would become a class 'NA'). Numbers with a few text cells are refused as in
    a feature column: one typo made a regression target hundreds of classes."""
    text = [i for i, f in enumerate(floats) if f is None]
    missing = [i for i, f in enumerate(floats) if f is not None and math.isnan(f)]
    if missing:
        i = missing[0]
        hint = "; a class named like a missing value (NA, null, ?, ...) needs another name" if text else ""
        raise DataError(f"{table.where(i, repr(name))}: the target has {len(missing)} missing value(s), e.g. "
                        f"{values[i]!r}; every row needs a target{hint}")
    if text and len(floats) - len(text) > len(text):
        i = text[0]
        raise DataError(f"{table.where(i, repr(name))}: the target holds numbers but {len(text)} cell(s) are "
                        f"text, e.g. {values[i]!r}; allowed: numbers in every row, or text labels in every "
                        "row (class labels, e.g. c10 for 10)")


def _finite_column(floats: list[float], values: tuple[str, ...], table: CsvRows, name: str) -> np.ndarray:
    """A numeric column as float64; ``inf`` or a number beyond float32 is refused at its line."""
    col = np.asarray(floats, dtype=np.float64)
    infinite = np.flatnonzero(beyond_float32(col))
    if infinite.size:
        i = int(infinite[0])
        raise infinite_cell(values[i], table.where(i, repr(name)))
    return col


def _integer_classes(col: np.ndarray, p: Path, name: str) -> bool:
    """Whole numbers are class labels, unless there are more than MAX_CSV_CLASSES of them."""
    if not bool(np.all(np.mod(col, 1) == 0)):
        return False
    distinct = len(np.unique(col))
    if distinct > MAX_CSV_CLASSES:
        # data.task does not exist: text labels are the way to ask for classes
        log.warning("csv file %s: target %r has %d distinct integers (more than %d), so it is read "
                    "as a regression target; for classes, write the labels as text (e.g. c%d)",
                    p, name, distinct, MAX_CSV_CLASSES, int(col[0]))
        return False
    return True


# ------------------------------------------------------------------------------ imagefolder
@FORMATS.register("imagefolder", help="one sub-folder of images per class (nested folders included)",
                  labels="its class sub-folders")
def read_imagefolder(*, path: str, bad_samples: str = "fail") -> RawData:
    """Images in ``<dir>/<class>/**``; every file is checked first (``bad_samples``: fail|skip).
    16-bit and float images are scaled to 8 bits, palette images read as RGB (:func:`image_8bit`)."""
    root = _existing(path, directory=True)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"empty dataset: {root} has no class sub-folders")
    files = [
        (f, i)
        for i, c in enumerate(classes)
        for f in _class_files(root / c)
    ]
    if not files:
        raise DataError(f"empty dataset: no image files under {root}")
    decoded = [(f, label, *_decode(f)) for f, label in files]
    bad = [(f, why) for f, _, arr, why in decoded if arr is None]
    good = _gray_as_rgb([(f, label, arr) for f, label, arr, _ in decoded if arr is not None], root)
    # Samples must share one shape; resizing would silently change the data, so report them.
    shape = Counter(arr.shape for _, _, arr in good).most_common(1)[0][0] if good else None
    bad += [(f, f"shape {_shape(arr.shape)} differs from the common {_shape(shape)}")
            for f, _, arr in good if arr.shape != shape]
    good = [g for g in good if g[2].shape == shape]
    if bad:
        if bad_samples != "skip":
            f, why = bad[0]
            more = f" (+{len(bad) - 1} more bad files)" if len(bad) > 1 else ""
            raise DataError(f"bad image {f}: {why}{more}; set data.bad_samples=skip to skip them")
        log.warning("skipped %d bad image(s) under %s, first: %s (%s)", len(bad), root, *bad[0])
    if not good:
        raise DataError(f"empty dataset: no readable images under {root}")
    return RawData(
        x=np.stack([arr for _, _, arr in good]), y=np.asarray([l for _, l, _ in good], dtype=np.int64),
        task="classification", kind="image", source=str(root), class_names=classes, scale=255.0,
        num_classes=len(classes), skipped=len(bad),
    )


def _gray_as_rgb(good: list[tuple[Path, int, np.ndarray]], root: Path) -> list[tuple[Path, int, np.ndarray]]:
    """Gray images in a set with colour ones become RGB, as torchvision's ImageFolder reads them
    (and as predict converts a gray file for a colour model): photo sets often hold a few gray
    JPEGs, which are no bad files."""
    gray = sum(1 for _, _, arr in good if arr.shape[0] == 1)
    if gray in (0, len(good)):  # image_8bit gives 1 (gray) or 3 channels
        return good
    log.info("%d gray image(s) under %s read as RGB: the set holds colour images", gray, root)
    return [(f, label, np.repeat(arr, 3, axis=0) if arr.shape[0] == 1 else arr) for f, label, arr in good]


def _class_files(folder: Path) -> list[Path]:
    """Every file under a class folder, sub-folders included: torchvision's ImageFolder walks
    them too, and leaving them out dropped images without a word. Hidden names are skipped."""
    return sorted(f for f in folder.rglob("*")
                  if f.is_file() and not any(part.startswith(".") for part in f.relative_to(folder).parts))


def _shape(shape: tuple[int, ...] | None) -> str:
    """(C, H, W) as 'CxHxW'."""
    return "x".join(map(str, shape)) if shape else "?"


def _decode(f: Path) -> tuple[np.ndarray | None, str]:
    """(C, H, W) uint8 pixels and "", or None and why the file is bad."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if f.stat().st_size == 0:
        return None, "zero-byte file"
    try:
        with warnings.catch_warnings():
            # Above MAX_IMAGE_PIXELS Pillow only warns; treat it as the bomb it may be.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                im.load()
                arr = np.asarray(image_8bit(im), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return None, f"decompression bomb ({exc.args[0].split('.')[0] if exc.args else 'too many pixels'})"
    except UnidentifiedImageError:
        return None, "not an image (wrong extension or unknown format)"
    except DataError as exc:  # pixels that 8 bits cannot hold faithfully
        return None, str(exc)
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt data
        return None, f"corrupt or truncated image ({exc})"
    return (arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)), ""


# -------------------------------------------------------------------------------------- idx
@FORMATS.register("idx", help="folder with the four standard MNIST-style IDX files", labels="its label files")
def read_idx_dir(*, path: str) -> RawData:
    """An IDX set folder (train/t10k images and labels)."""
    return idx_raw(_existing(path, directory=True))

