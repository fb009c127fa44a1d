"""``dlopt run --set stages.NAME.OPTION=VALUE`` reaches a stage's own options: the stage
reruns (its key follows the option), the others stay cached, and the reproduce commands
keep the override; an unknown stage or option is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app

from pipeline_helpers import lenet_base

runner = CliRunner()

DOC = {
    "name": "set-stage",
    "base": lenet_base(subset=300),
    "stages": [{"name": "lr_find", "steps": 5},
               {"name": "lr.probe", "type": "lr_find", "steps": 5}],  # a name holding a dot
}


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**DOC, "runs_dir": str(tmp_path / "runs")}, sort_keys=False))
    return path


def _results(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "runs" / "set-stage" / "results.json").read_text())


def test_set_reaches_a_stage_option_and_reruns_only_that_stage(tmp_path):
    path = _write(tmp_path)
    assert runner.invoke(app, ["run", str(path), "--no-report"]).exit_code == 0
    over = "stages.lr.probe.steps=7"
    res = runner.invoke(app, ["run", str(path), "--no-report", "--set", over])
    assert res.exit_code == 0, res.output[-800:]
    doc = _results(tmp_path)
    assert {s["name"]: s["status"] for s in doc["stages"]} == {"lr_find": "cached", "lr.probe": "ran"}
    assert len(json.loads((tmp_path / "runs" / "set-stage" / "lr.probe" / "lr_find.json").read_text())["lrs"]) == 7
    assert f"--set {over}" in doc["commands"][0]
    assert "--steps 7" in doc["stage_commands"]["lr.probe"][0]
    saved = yaml.safe_load((tmp_path / "runs" / "set-stage" / "pipeline.yaml").read_text())
    assert saved["stages"][1]["steps"] == 7


@pytest.mark.parametrize("over, words", [
    ("stages.lr_fnd.steps=7", "'lr_fnd' is not a stage; allowed: stages.STAGE.OPTION=value with STAGE one of "
                              "lr_find, lr.probe"),
    ("stages.lr_find.stpes=7", "unknown key 'stpes'; allowed: config, max_lr, min_lr, steps"),
    ("stages.lr_find=7", "name one of the stage's options, e.g. stages.lr_find.OPTION=value"),
    ("stages.lr_find.steps=0", "steps=0"),
])
def test_a_bad_stage_override_is_one_line_before_anything_runs(tmp_path, over, words):
    res = runner.invoke(app, ["run", str(_write(tmp_path)), "--set", over])
    assert res.exit_code == 2
    assert words in res.output and res.output.count("\n") == 1, res.output
    assert not (tmp_path / "runs").exists()
