"""User data formats, named ``<format>:<path>``: npz, csv, imagefolder and idx.

Every reader checks what it reads and raises a one-line :class:`DataError` naming the file
and the fault. Image folders get a preflight over every file before training starts.
"""

from __future__ import annotations

import csv
import logging
import math
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from dlopt.data._builtin import idx_raw
from dlopt.data._raw import RawData
from dlopt.data._registry import FORMATS
from dlopt.errors import DataError

log = logging.getLogger(__name__)

# Integer-valued csv targets with at most this many distinct values are class labels.
MAX_CSV_CLASSES = 50


def _existing(path: str | Path, *, directory: bool = False) -> Path:
    p = Path(path).expanduser()
    ok = p.is_dir() if directory else p.is_file()
    if not ok:
        raise DataError(f"missing {'directory' if directory else 'file'}: {p}")
    return p


# -------------------------------------------------------------------------------------- npz
@FORMATS.register("npz", help="numpy .npz with arrays x, y (optional x_test, y_test, class_names)")
def read_npz(*, path: str) -> RawData:
    """Arrays ``x``/``y`` (and optionally ``x_test``/``y_test``, ``class_names``) from an .npz."""
    p = _existing(path)
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as exc:
        # numpy says "Object arrays cannot be loaded when allow_pickle=False"
        raise DataError(f"cannot read npz file {p}: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"corrupt npz file {p}: {exc.__class__.__name__}: {exc}") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"npz file {p} lacks array {key!r} (has: {', '.join(sorted(arrays)) or 'none'})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"npz file {p} must hold both x_test and y_test, or neither")
    names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else []
    x, kind, scale = _npz_inputs(arrays["x"], p, "x")
    x_test = _npz_inputs(arrays["x_test"], p, "x_test")[0] if "x_test" in arrays else None
    y, y_test = arrays["y"], arrays.get("y_test")
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


def _npz_inputs(x: np.ndarray, p: Path, key: str) -> tuple[np.ndarray, str, float]:
    """Shape ``x`` as images (N,C,H,W), sequences (N,C,L) or a table (N,F)."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"npz file {p}: array {key!r} has dtype {x.dtype}, expected numbers")
    if x.ndim == 1:
        return x[:, None], "tabular", 0.0
    if x.ndim == 2:
        return x, "tabular", 0.0
    if x.ndim == 3 and x.dtype == np.uint8:  # (N, H, W) grayscale images
        return x[:, None], "image", 255.0
    if x.ndim == 3:
        return x, "sequence", 0.0
    if x.ndim == 4:
        return x, "image", 255.0 if x.dtype == np.uint8 else 0.0
    raise DataError(f"npz file {p}: array {key!r} has {x.ndim} dimensions, expected 1 to 4")


# -------------------------------------------------------------------------------------- csv
@FORMATS.register("csv", help="csv with a header row; data.target names the target column")
def read_csv(*, path: str, target: str | None = None) -> RawData:
    """A table with a header row; ``target`` names the label/target column."""
    p = _existing(path)
    header, rows = _csv_rows(p)
    if target is None:
        raise DataError(f"csv file {p}: set data.target to the target column, one of: {', '.join(header)}")
    if target not in header:
        raise DataError(f"csv file {p}: no column {target!r}; columns: {', '.join(header)}")
    t = header.index(target)
    features = [h for i, h in enumerate(header) if i != t]
    if not features:
        raise DataError(f"csv file {p}: no feature columns besides target {target!r}")
    cols = list(zip(*rows))
    y_raw = cols[t]
    empty = sum(1 for v in y_raw if v.strip() == "")
    if empty:
        raise DataError(f"csv file {p}: target column {target!r} has {empty} empty cells")
    y, task, names = _csv_target(y_raw)
    columns = [_csv_column(cols[i]) for i in range(len(header)) if i != t]
    numeric = all(c.dtype != object for c in columns)
    x = np.stack(columns, axis=1) if numeric else np.stack([c.astype(object) for c in columns], axis=1)
    return RawData(
        x=x, y=y, task=task, kind="tabular", source=str(p), class_names=names,
        feature_names=features, num_classes=len(names) or None,
    )


def _csv_rows(p: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"empty dataset: csv file {p} has no header row")
            header = [h.strip() for h in header]
            rows = []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"csv file {p} line {reader.line_num}: {len(row)} fields, header has {len(header)}"
                    )
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise DataError(f"csv file {p} is not UTF-8 text: byte {exc.start}") from None
    except csv.Error as exc:
        raise DataError(f"malformed csv file {p}: {exc}") from None
    if not rows:
        raise DataError(f"empty dataset: csv file {p} has no data rows")
    return header, rows


def _to_float(v: str) -> float | None:
    s = v.strip()
    if s == "":
        return math.nan
    try:
        return float(s)
    except ValueError:
        return None


def _csv_column(values: tuple[str, ...]) -> np.ndarray:
    """float64 when every non-empty cell is a number (empty -> NaN), else the strings."""
    floats = [_to_float(v) for v in values]
    if all(f is not None for f in floats):
        return np.asarray(floats, dtype=np.float64)
    return np.asarray([v.strip() for v in values], dtype=object)


def _csv_target(values: tuple[str, ...]) -> tuple[np.ndarray, str, list[str]]:
    """Numeric non-integer (or many-valued) targets are regression; the rest are classes."""
    col = _csv_column(values)
    if col.dtype != object:
        integral = bool(np.all(np.mod(col, 1) == 0))
        if not integral or len(np.unique(col)) > MAX_CSV_CLASSES:
            return col.astype(np.float32), "regression", []
        values = tuple(str(int(v)) for v in col)
        order = sorted(set(values), key=int)
    else:
        order = sorted(set(col.tolist()))
    lookup = {n: i for i, n in enumerate(order)}
    return np.array([lookup[str(v).strip()] for v in values], dtype=np.int64), "classification", order


# ------------------------------------------------------------------------------ imagefolder
@FORMATS.register("imagefolder", help="one sub-folder of images per class")
def read_imagefolder(*, path: str, bad_samples: str = "fail") -> RawData:
    """Images in ``<dir>/<class>/*``; every file is checked first (``bad_samples``: fail|skip)."""
    root = _existing(path, directory=True)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"empty dataset: {root} has no class sub-folders")
    files = [
        (f, i)
        for i, c in enumerate(classes)
        for f in sorted((root / c).iterdir())
        if f.is_file() and not f.name.startswith(".")
    ]
    if not files:
        raise DataError(f"empty dataset: no image files under {root}")
    decoded = [(f, label, *_decode(f)) for f, label in files]
    bad = [(f, why) for f, _, arr, why in decoded if arr is None]
    good = [(f, label, arr) for f, label, arr, _ in decoded if arr is not None]
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
                im = im.convert("L" if len(im.getbands()) == 1 else "RGB")
                arr = np.asarray(im, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return None, f"decompression bomb ({exc.args[0].split('.')[0] if exc.args else 'too many pixels'})"
    except UnidentifiedImageError:
        return None, "not an image (wrong extension or unknown format)"
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt data
        return None, f"corrupt or truncated image ({exc})"
    return (arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)), ""


# -------------------------------------------------------------------------------------- idx
@FORMATS.register("idx", help="folder with the four standard MNIST-style IDX files")
def read_idx_dir(*, path: str) -> RawData:
    """An IDX set folder (train/t10k images and labels)."""
    p = _existing(path, directory=True)
    return idx_raw(p, source=str(p))

