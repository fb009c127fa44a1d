"""Shared compression fixtures: small real runs (MNIST slices, 1-2 epochs) and fast measure
settings (no latency timing, legacy exporter) so the whole room stays within its budget."""

from __future__ import annotations

from pathlib import Path

import pytest

MNIST = {"name": "mnist", "subset": 600, "test_subset": 300}


def _run(tmp_path_factory, name: str, model: dict, epochs: int = 1, data: dict | None = None,
         batch_size: int = 64) -> Path:
    import dlopt
    from dlopt.train import recipe_config

    cfg = recipe_config(data=dict(data or MNIST), model=model, epochs=epochs, progress=False, lr=3e-3,
                        batch_size=batch_size)
    run_dir = tmp_path_factory.mktemp("runs") / name
    dlopt.fit(config=cfg, run_dir=run_dir)
    return run_dir


@pytest.fixture(scope="session")
def fast():
    """Measure settings for tests: accuracy and size only, quick exporter."""
    from dlopt.compress import MeasureSettings

    return MeasureSettings(latency=False, exporter="legacy")


@pytest.fixture(scope="session")
def lenet_run(tmp_path_factory) -> Path:
    """A real 1-epoch LeNet-5 run on an MNIST slice."""
    return _run(tmp_path_factory, "lenet", {"name": "lenet5"})


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory) -> Path:
    """A real 1-epoch MLP run (Linear-only: the dynamic-INT8 and low-bit case)."""
    return _run(tmp_path_factory, "mlp", {"name": "mlp", "width": 64, "depth": 2})


@pytest.fixture(scope="session")
def gru_run(tmp_path_factory) -> Path:
    """A real 1-epoch GRU run (image rows as steps): a model without width options."""
    return _run(tmp_path_factory, "gru", {"name": "gru", "width": 8})


@pytest.fixture(scope="session")
def diabetes_run(tmp_path_factory) -> Path:
    """A real regression run: an MLP on sklearn's diabetes (442 rows, 10 features), 20 epochs
    (~3 s) so its validation R2 is clearly above 0."""
    data = {"name": "diabetes", "preprocess": [{"op": "zscore"}]}
    return _run(tmp_path_factory, "diabetes", {"name": "mlp", "width": 32, "depth": 2}, epochs=20, data=data,
                batch_size=32)
