"""What ``dlopt run`` prints: its own lines, not optuna's "[I date] ..." log of the tune stage."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from dlopt.cli import app


def test_a_tune_stage_prints_no_optuna_log_lines(tmp_path, capfd):
    doc = {"name": "quiet", "runs_dir": str(tmp_path / "runs"),
           "base": {"data": {"name": "mnist", "subset": 200, "test_subset": 100},
                    "model": {"name": "mlp", "width": 16, "depth": 1},
                    "train": {"epochs": 1, "batch_size": 64, "progress": False}},
           "stages": [{"name": "tune", "trials": 1,
                       "search": {"space": {"train.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
                                  "pruner": "none"}}]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["run", str(path), "--no-report"])
    assert res.exit_code == 0, res.output
    printed = capfd.readouterr()
    text = res.output + printed.out + printed.err
    assert "[tune] ran" in text
    assert "A new study created" not in text and "[I 20" not in text
