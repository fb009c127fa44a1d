"""``dlopt run --set stages.TUNE.search.space.AXIS.KEY=VALUE`` reaches an axis of the file;
one naming an axis the file lacks says so in one line (exit 2), not "unknown key 'optim'"."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.pipeline import load_pipeline

from pipeline_helpers import lenet_base

runner = CliRunner()

DOC = {
    "name": "set-axis",
    "base": lenet_base(subset=300),
    "stages": [{"name": "tune", "trials": 1, "search": {"space": {
        "train.optim.lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-1, "log": True},
        "train.batch_size": [32, 64]}}}],
}


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**DOC, "runs_dir": str(tmp_path / "runs")}, sort_keys=False))
    return path


def test_set_changes_an_axis_of_the_file(tmp_path):
    _, options = load_pipeline(_write(tmp_path), ["stages.tune.search.space.train.optim.lr.high=0.05"])
    assert options["tune"].search["space"]["train.optim.lr"]["high"] == 0.05


def test_set_on_an_axis_the_file_lacks_names_that_axis(tmp_path):
    over = "stages.tune.search.space.train.optim.lrx.high=0.1"
    res = runner.invoke(app, ["run", str(_write(tmp_path)), "--set", over])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "stages[0] 'tune': search.space: no axis 'train.optim.lrx'; axes: train.optim.lr, " \
           "train.batch_size (an axis is one dotted key" in res.output
    assert "unknown key 'optim'" not in res.output and not (tmp_path / "runs").exists()
