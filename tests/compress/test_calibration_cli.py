"""`dlopt quantize --calibration`: histogram calibrators on any row count, quietly, and only
the calibrators meant for INT8 (real runs, real ONNX Runtime)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dlopt.cli import app

runner = CliRunner()


def test_entropy_on_rows_not_a_multiple_of_32(lenet_run, tmp_path):
    out = tmp_path / "q"
    res = runner.invoke(app, ["quantize", str(lenet_run), "--out", str(out), "--method", "static",
                              "--calibration", "entropy", "--calib-samples", "100", "--no-latency",
                              "--exporter", "legacy", "--conv-kernel", "direct", "--max-drop-pt", "100"])
    assert res.exit_code == 0, res.output
    assert "histogram" not in res.output and "Number of" not in res.output  # ORT's progress prints
    options = json.loads((out / "summary.json").read_text())["compression"]["options"]
    assert options["calibration"] == "entropy" and options["calib_samples"] == 100


def test_distribution_calibration_is_refused(lenet_run, tmp_path):
    res = runner.invoke(app, ["quantize", str(lenet_run), "--out", str(tmp_path / "q"), "--method", "static",
                              "--calibration", "distribution"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and "float 8" in lines[0] and "allowed: minmax, entropy, percentile" in lines[0]
    assert not (tmp_path / "q").exists()
