"""Small real-data slices for the model tests (read straight from the packaged MNIST gz files)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

import dlopt

_MNIST = Path(dlopt.__file__).parent / "data" / "_files" / "mnist"


def _read_idx(path: Path, offset: int, count: int, item: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        fh.read(offset)
        return np.frombuffer(fh.read(count * item), dtype=np.uint8)


@pytest.fixture(scope="session")
def mnist_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The first 128 MNIST training images (1x28x28 in [0, 1]) and labels."""
    n = 128
    x = _read_idx(_MNIST / "train-images-idx3-ubyte.gz", 16, n, 28 * 28)
    y = _read_idx(_MNIST / "train-labels-idx1-ubyte.gz", 8, n, 1)
    images = torch.from_numpy(x.reshape(n, 1, 28, 28).astype(np.float32) / 255.0)
    return images, torch.from_numpy(y.astype(np.int64))


@pytest.fixture(scope="session")
def mnist1d_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """128 MNIST-1D signals of length 40 (generated locally, no network) and labels."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 160  # make_dataset keeps 80% for training
    data = make_dataset(args)
    return (
        torch.as_tensor(data["x"][:128], dtype=torch.float32),
        torch.as_tensor(data["y"][:128], dtype=torch.int64),
    )
