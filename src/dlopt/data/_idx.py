"""IDX files (the MNIST format), optionally gzipped, read with checks that name the file."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from dlopt.errors import DataError

# The four standard file names of an IDX image set.
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}

# IDX type byte -> numpy big-endian dtype
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    """File contents, gunzipped when gzip-compressed; ``limit`` reads only a prefix."""
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    with open(path, "rb") as f:
        magic = f.read(2)
    try:
        if magic == _GZIP_MAGIC:
            with gzip.open(path, "rb") as g:
                return g.read() if limit is None else g.read(limit)
        with open(path, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"corrupt gzip file {path}: {exc}") from None


def _parse_header(buf: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _DTYPES:
        raise DataError(f"not an IDX file {path}: bad magic number {buf[:4].hex() or 'empty'}")
    ndim = buf[3]
    if ndim == 0 or len(buf) < 4 + 4 * ndim:
        raise DataError(f"truncated IDX file {path}: header cut short")
    dims = struct.unpack(f">{ndim}I", buf[4 : 4 + 4 * ndim])
    return np.dtype(_DTYPES[buf[2]]), tuple(int(d) for d in dims), 4 + 4 * ndim


def read_idx(path: str | Path, *, sha256sum: str | None = None) -> np.ndarray:
    """One IDX array; a checksum mismatch, bad header or short payload is a :class:`DataError`."""
    path = Path(path)
    if sha256sum is not None and path.is_file():
        got = sha256(path)
        if got != sha256sum:
            raise DataError(f"checksum mismatch for {path}: sha256 {got[:16]}..., expected {sha256sum[:16]}...")
    buf = _read_bytes(path)
    dtype, dims, offset = _parse_header(buf, path)
    count = math.prod(dims)  # Python ints: np.prod wraps at 2**64 and would pass the check below
    need = count * dtype.itemsize
    have = len(buf) - offset
    if have < need:
        raise DataError(f"truncated IDX file {path}: {have} data bytes, header promises {need}")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_idx_shape(path: str | Path) -> tuple[int, ...]:
    """Only the dimensions from the header (cheap, for listings)."""
    path = Path(path)
    _, dims, _ = _parse_header(_read_bytes(path, limit=4 + 4 * 4), path)
    return dims


def read_idx_set(
    directory: str | Path, *, checksums: dict[str, str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` with images as ``(N, 1, H, W)`` uint8."""
    directory = Path(os.path.abspath(directory))  # what a missing file's error names
    if not directory.is_dir():
        raise DataError(f"missing data directory: {directory}")
    missing = next((f for f in IDX_FILES.values() if not (directory / f).is_file()), None)
    if missing is not None:
        raise DataError(f"IDX folder {directory}: missing file {missing}; an IDX set holds the four files "
                        f"{', '.join(IDX_FILES.values())}")
    checksums = checksums or {}
    arrays = {}
    for key, fname in IDX_FILES.items():
        arrays[key] = read_idx(directory / fname, sha256sum=checksums.get(fname))
    for part in ("train", "test"):
        x, y = arrays[f"{part}_x"], arrays[f"{part}_y"]
        xfile = directory / IDX_FILES[f"{part}_x"]
        if x.ndim != 3:
            raise DataError(f"bad image array in {xfile}: {x.ndim} dimensions, expected 3 (N, H, W)")
        if y.ndim != 1:
            raise DataError(f"bad label array in {directory / IDX_FILES[f'{part}_y']}: {y.ndim} dimensions, expected 1")
        if len(x) != len(y):
            raise DataError(f"x/y length mismatch in {directory}: {xfile.name} has {len(x)}, labels {len(y)}")
        arrays[f"{part}_x"] = x[:, None]
    _check_image_sizes(directory, arrays["train_x"], arrays["test_x"])
    return arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"]


def _check_image_sizes(directory: Path, x_train: np.ndarray, x_test: np.ndarray) -> None:
    # a model built for the training size would only fail at test evaluation, after training
    if x_train.shape[1:] != x_test.shape[1:]:
        train_hw, test_hw = ("x".join(map(str, x.shape[2:])) for x in (x_train, x_test))
        raise DataError(
            f"image size mismatch in {directory}: {IDX_FILES['train_x']} holds {train_hw} images, "
            f"{IDX_FILES['test_x']} holds {test_hw}; both splits need the same size"
        )


def is_idx_set(directory: Path) -> bool:
    """True when ``directory`` holds the four standard IDX file names."""
    return directory.is_dir() and all((directory / f).is_file() for f in IDX_FILES.values())
