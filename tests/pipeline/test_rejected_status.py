"""``dlopt run``'s stage table says when the guard rejected a compression step: the terminal
table has no note column, and the row shows the input model's figures."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from dlopt.cli import app

from pipeline_helpers import lenet_base


def test_a_prune_stage_the_guard_rejected_reads_rejected_in_the_table(tmp_path):
    base = lenet_base(subset=600, test_subset=100)
    base["train"]["optim"] = {"name": "adam", "lr": 0.003}
    doc = {"name": "guard", "runs_dir": str(tmp_path / "runs"), "base": base,
           "stages": [{"name": "train"},
                      # most of the MACs gone, no fine-tuning, no drop allowed: the guard keeps the input
                      {"name": "prune", "input": "train", "target": "macs=0.05", "finetune_epochs": 0,
                       "max_drop_pt": 0}]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["run", str(path), "--no-report"])
    assert res.exit_code == 0, res.output
    stages = json.loads((tmp_path / "runs" / "guard" / "results.json").read_text())["stages"]
    assert stages[1]["metrics"]["accepted"] is False
    rows = {line.split()[0]: line for line in res.stdout.splitlines() if line.split()[:1] in (["train"], ["prune"])}
    assert rows["prune"].split()[2:4] == ["ran,", "rejected"]
    assert "rejected" not in rows["train"]
