"""What a stage record tells: a compression guard's note says when latency went unchecked,
and lr_find's reproduce line names a config file that exists and redoes the test."""

from __future__ import annotations

import shlex

from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.pipeline import parse_pipeline, run_pipeline
from pipeline_helpers import lenet_base


def test_quantize_note_and_lr_find_command(tmp_path):
    doc = {"name": "notes", "runs_dir": str(tmp_path / "runs"), "base": lenet_base(subset=200),
           "stages": [{"name": "train"}, {"name": "lr_find", "steps": 8},
                      {"name": "quantize", "input": "train", "method": "dynamic", "max_drop_pt": 100}]}
    cfg, opts = parse_pipeline(doc)
    rec = {r.name: r for r in run_pipeline(cfg, opts, report=False).records}
    assert rec["quantize"].metrics["reason"].endswith("; latency not checked (measure_latency: false)")
    line = rec["lr_find"].commands[0]
    assert "<config>" not in line
    args = shlex.split(line)
    assert args[2] == str(rec["lr_find"].dir / "config.yaml")
    res = CliRunner().invoke(app, [*args[1:], "--run-dir", str(tmp_path / "again")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "again" / "lr_find.json").exists()
