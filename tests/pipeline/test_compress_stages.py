"""prune, distill and quantize stages call dlopt.compress and record its guard decision."""

from __future__ import annotations

import json
import shlex

from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.pipeline import parse_pipeline, run_pipeline


def test_compress_stages_on_a_tiny_run(tmp_path):
    doc = {
        "name": "comp", "runs_dir": str(tmp_path / "runs"),
        "base": {"data": {"name": "mnist", "subset": 400, "test_subset": 100},
                 "model": {"name": "mlp", "width": 32, "depth": 1},
                 "train": {"epochs": 1, "batch_size": 64, "progress": False, "optim": {"name": "adam", "lr": 0.01}}},
        "stages": [
            {"name": "train"},
            {"name": "prune", "input": "train", "target": "macs=0.5", "finetune_epochs": 1, "max_drop_pt": 100},
            {"name": "distill", "input": "train", "student": {"name": "mlp", "width": 8, "depth": 1},
             "epochs": 1, "max_drop_pt": 100},
            {"name": "quantize", "input": "train", "method": "dynamic", "calib_samples": 32, "max_drop_pt": 100},
        ],
    }
    cfg, opts = parse_pipeline(doc)
    result = run_pipeline(cfg, opts, report=False)
    rec = {r.name: r for r in result.records}
    for name in ("prune", "distill", "quantize"):
        m = rec[name].metrics
        assert m["accepted"] is True, m.get("reason")
        assert 0.0 <= m["accuracy"] <= 1.0 and m["params"] > 0
        assert (rec[name].dir / "run" / "summary.json").exists()
    assert rec["prune"].metrics["macs"] < rec["train"].metrics["macs"]
    assert rec["distill"].metrics["params"] < rec["train"].metrics["params"]
    assert rec["quantize"].path("onnx").name == "model.int8.onnx"
    _stage_commands_redo_the_step(rec, tmp_path)


def _stage_commands_redo_the_step(rec, tmp_path):
    """Each compression stage records the dlopt prune/distill/quantize line with its options;
    run elsewhere, it gives the same method and the same model shape as the stage."""
    for name in ("prune", "distill", "quantize"):
        args = shlex.split(rec[name].commands[0])
        assert args[:2] == ["dlopt", name]
        args[args.index("--out") + 1] = str(tmp_path / f"redo-{name}")
        res = CliRunner().invoke(app, args[1:])
        assert res.exit_code == 0, res.output[-800:]
        comp = json.loads((tmp_path / f"redo-{name}" / "summary.json").read_text())["compression"]
        assert comp.get("method") == rec[name].metrics["method"]
        for key in ("params", "macs"):
            assert comp["after"][key] == rec[name].metrics["after"][key], (name, key)


def test_a_regression_prune_stage_shows_the_kept_models_test_r2(tmp_path):
    doc = {
        "name": "reg", "runs_dir": str(tmp_path / "runs"),
        "base": {"data": {"name": "diabetes", "preprocess": [{"op": "zscore"}]},
                 "model": {"name": "mlp", "width": 16, "depth": 1},
                 "train": {"epochs": 3, "batch_size": 32, "progress": False, "optim": {"name": "adam", "lr": 0.01}}},
        "stages": [{"name": "train"},
                   {"name": "prune", "input": "train", "target": "sparsity=0.5", "finetune_epochs": 1,
                    "max_drop_pt": 100}],
    }
    cfg, opts = parse_pipeline(doc)
    rec = {r.name: r for r in run_pipeline(cfg, opts, report=False).records}
    m = rec["prune"].metrics
    kept = m["after"] if m["accepted"] else m["before"]
    assert m["test_r2"] == kept["test_r2"]
