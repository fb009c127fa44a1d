"""Helpers that write small real data files (IDX, npz, csv, images) into tmp_path."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from dlopt.data._idx import IDX_FILES


# IDX type bytes of the dtypes tests write besides uint8 (the MNIST type, the default)
_IDX_TYPES = {np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}


def write_idx(path: Path, arr: np.ndarray, *, compress: bool = True) -> Path:
    """An IDX file of ``arr`` (int16 and float32 as they are, anything else as uint8)."""
    code = _IDX_TYPES.get(arr.dtype, 0x08)
    dtype = arr.dtype.newbyteorder(">") if code != 0x08 else np.dtype(np.uint8)
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + np.ascontiguousarray(arr, dtype=dtype).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_idx_set(folder: Path, *, n_train: int = 60, n_test: int = 20, classes: int = 3,
                  hw: int = 6, seed: int = 0) -> Path:
    """A tiny IDX set: images whose mean brightness encodes the class."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % classes
        x = (rng.integers(0, 40, (n, hw, hw)) + 60 * y[:, None, None]).astype(np.uint8)
        write_idx(folder / IDX_FILES[f"{part}_x"], x)
        write_idx(folder / IDX_FILES[f"{part}_y"], y.astype(np.uint8))
    return folder


def write_images(folder: Path, *, per_class: int = 6, classes: tuple[str, ...] = ("cat", "dog"),
                 size: tuple[int, int] = (8, 8), mode: str = "L") -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for ci, c in enumerate(classes):
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            arr = (rng.integers(0, 100, shape) + 100 * ci).astype(np.uint8)
            Image.fromarray(arr, mode=mode).save(folder / c / f"{i}.png")
    return folder


@pytest.fixture
def make_images():
    """``write_images`` for tests that need their own image folder."""
    return write_images


@pytest.fixture
def make_idx():
    """``write_idx`` for tests that craft IDX files."""
    return write_idx


@pytest.fixture
def make_idx_set():
    """``write_idx_set`` for tests that need an IDX set in a folder of their own."""
    return write_idx_set


@pytest.fixture
def idx_set(tmp_path: Path) -> Path:
    return write_idx_set(tmp_path / "tiny")


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    return write_images(tmp_path / "imgs")


