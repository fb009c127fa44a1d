"""Fixtures for the training tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mnist_small():
    """The same MNIST slice the tiny configs use, loaded once (540 train / 60 val / 200 test)."""
    from dlopt.data import load_dataset

    return load_dataset("mnist", subset=600, test_subset=200, seed=0)
