"""One small real pipeline run shared by the report tests (train, lr_find, tune, retrain,
export, bench, serve_check on an MNIST slice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlopt.pipeline import parse_pipeline, run_pipeline

PIPELINE = {
    "name": "tiny",
    "base": {
        "data": {"name": "mnist", "subset": 600, "test_subset": 200},
        "model": {"name": "lenet5", "width": 0.5},
        "train": {"epochs": 2, "batch_size": 64, "progress": False, "optim": {"name": "adam", "lr": 0.003}},
    },
    "stages": [
        {"name": "train"},
        {"name": "lr_find", "steps": 12},
        {"name": "tune", "input": "lr_find", "trials": 2, "config": {"train": {"epochs": 1}},
         "search": {"space": {"train.optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
                    "sampler": {"name": "random", "seed": 0}, "pruner": "none"}},
        {"name": "retrain", "input": "tune"},
        {"name": "export", "input": "retrain"},
        {"name": "bench", "inputs": ["train", "retrain"], "samples": 64, "min_runs": 3, "min_seconds": 0.05},
        {"name": "serve_check", "input": "export", "samples": 10},
    ],
}


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> Path:
    """Root directory of the finished tiny pipeline (report written)."""
    runs = tmp_path_factory.mktemp("report-runs")
    cfg, opts = parse_pipeline({**PIPELINE, "runs_dir": str(runs)})
    return run_pipeline(cfg, opts).root
