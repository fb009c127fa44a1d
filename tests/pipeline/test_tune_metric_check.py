"""A tune stage's trials are training runs: a ``val_`` metric no training run reports is
refused before the upstream stages run."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app

from pipeline_helpers import lenet_base

SPACE = {"train.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}


@pytest.mark.parametrize("search, key", [
    ({"objectives": [{"metric": "val_acc"}, {"metric": "params"}]}, "objectives[0]"),
    ({"constraints": [{"metric": "val_acuracy", "min": 0.5}]}, "constraints[0]"),
])
def test_a_val_metric_typo_fails_before_any_stage_runs(tmp_path, search, key):
    doc = {"name": "typo", "runs_dir": str(tmp_path / "runs"), "base": lenet_base(subset=200),
           "stages": [{"name": "train"}, {"name": "tune", "trials": 1, "search": {"space": SPACE, **search}}]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["run", str(path), "--no-report"])
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {path}: stages[1] 'tune': search.{key}.metric='")
    assert "allowed: val_loss, val_accuracy," in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_val_metric_without_a_validation_split_fails_before_any_stage_runs(tmp_path):
    tune = {"name": "tune", "trials": 1, "config": {"data": {"val_fraction": 0}},
            "search": {"space": SPACE, "objectives": [{"metric": "val_loss"}]}}
    doc = {"name": "noval", "runs_dir": str(tmp_path / "runs"), "base": lenet_base(subset=200),
           "stages": [{"name": "train"}, tune]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["run", str(path), "--no-report"])
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {path}: stages[1] 'tune': search.objectives[0].metric="
                                 "'val_loss': the runs have no validation split (data.val_fraction: 0)")
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
