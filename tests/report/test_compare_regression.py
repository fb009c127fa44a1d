"""``dlopt compare`` of training runs: a regression run, which has no accuracy, shows its test
r2 / mae in its row instead of dashes only."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

import dlopt
from dlopt.cli import app
from dlopt.report._tables import regression_note

runner = CliRunner()


def _regression_run(tmp_path, name: str):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3)).astype(np.float32)
    np.savez(tmp_path / f"{name}.npz", x=x, y=(x @ np.array([1.0, -2.0, 0.5])).astype(np.float32))
    run = tmp_path / name
    dlopt.fit(config={"name": name, "data": {"name": f"npz:{tmp_path / name}.npz"},
                      "model": {"name": "mlp", "width": 8, "depth": 1},
                      "train": {"epochs": 1, "batch_size": 32, "progress": False, "threads": 1}}, run_dir=run)
    return run


def test_compare_shows_a_regression_runs_test_metrics(tmp_path):
    import json

    runs = [_regression_run(tmp_path, n) for n in ("ra", "rb")]
    res = runner.invoke(app, ["compare", *map(str, runs), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    table = (tmp_path / "cmp" / "compare.md").read_text()
    for run in runs:
        test = json.loads((run / "summary.json").read_text())["test"]
        row = next(line for line in table.splitlines() if line.startswith(f"| {run.name} |"))
        assert f"test r2 {test['r2']:.4f}, mae {test['mae']:.4f}; 1 epoch" in row


def test_the_note_names_what_the_run_has():
    assert regression_note({"r2": 0.5, "mae": 1.25, "mse": 2.0}) == "test r2 0.5000, mae 1.2500"
    assert regression_note({"rmse": 3.0}) == "test rmse 3.0000"
    assert regression_note({"accuracy": 0.9, "r2": 0.1}) == ""  # a classification row shows its accuracy
