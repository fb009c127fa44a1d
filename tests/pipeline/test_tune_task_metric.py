"""A tune stage on a built-in dataset knows its task up front: a ``val_`` metric of the other
task (``val_r2`` on a classification set) is refused before the upstream stages run."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app

from pipeline_helpers import lenet_base

SPACE = {"train.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}


def _run(tmp_path, base, search):
    doc = {"name": "task", "runs_dir": str(tmp_path / "runs"), "base": base,
           "stages": [{"name": "train"}, {"name": "tune", "trials": 1, "search": {"space": SPACE, **search}}]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, CliRunner().invoke(app, ["run", str(path), "--no-report"])


@pytest.mark.parametrize("search, key, metric", [
    ({"objectives": [{"metric": "val_r2"}, {"metric": "params"}]}, "objectives[0]", "val_r2"),
    ({"constraints": [{"metric": "val_mae", "max": 1.0}]}, "constraints[0]", "val_mae"),
])
def test_a_val_metric_of_the_other_task_fails_before_any_stage_runs(tmp_path, search, key, metric):
    path, res = _run(tmp_path, lenet_base(subset=200), search)
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {path}: stages[1] 'tune': search.{key}.metric='{metric}': "
                                 "a classification run (data mnist) reports no such validation metric")
    allowed = res.output.split("allowed: ")[1]
    assert "val_accuracy" in allowed and "val_r2" not in allowed and "val_mse" not in allowed
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_regression_sets_metric_is_refused_on_classification_only(tmp_path):
    base = {"data": {"name": "diabetes"}, "model": {"name": "mlp", "width": 16, "depth": 1},
            "train": {"epochs": 1, "progress": False}}
    path, res = _run(tmp_path, base, {"objectives": [{"metric": "val_accuracy"}]})
    assert res.exit_code == 2, res.output
    assert "search.objectives[0].metric='val_accuracy': a regression run (data diabetes)" in res.output
    assert "allowed: val_loss, val_mse, val_mae, val_r2," in res.output
