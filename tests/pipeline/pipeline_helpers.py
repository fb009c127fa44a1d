"""Small pipelines for the pipeline tests: LeNet-5 at half width on an MNIST slice."""

from __future__ import annotations

from typing import Any


def lenet_base(*, subset: int, test_subset: int = 100, epochs: int = 1) -> dict[str, Any]:
    """A pipeline's ``base``: a quick, seeded LeNet-5 run."""
    return {"data": {"name": "mnist", "subset": subset, "test_subset": test_subset},
            "model": {"name": "lenet5", "width": 0.5},
            "train": {"epochs": epochs, "batch_size": 64, "progress": False, "seed": 0}}
