"""``dlopt eval`` / ``evaluate`` score what a run delivers: a quantize output run's
``model.int8.onnx`` on ONNX Runtime, not the FP32 ``model.safetensors`` kept beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from dlopt.cli import app

from train_helpers import one_error_line, tiny_config


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory) -> Path:
    """A tiny real run and its accepted static INT8 quantization (no timing: accepted on accuracy)."""
    from dlopt.compress import Budget, MeasureSettings, quantize_run
    from dlopt.train import train_run

    tmp = tmp_path_factory.mktemp("figures-eval")
    train_run(tiny_config(epochs=3, optim={"name": "adam", "lr": 3e-3}), run_dir=tmp / "run")
    res = quantize_run(tmp / "run", tmp / "q", method="static", calib_samples=64, conv_kernel="direct",
                       budget=Budget(max_drop_pt=100.0), measure=MeasureSettings(latency=False, exporter="legacy"))
    assert res.accepted, res.reason
    return res.run_dir


def _ort_test_outputs(run: Path, file: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs of ``run/file`` on ONNX Runtime over the run's test split, and its labels."""
    from dlopt.data import load_data
    from dlopt.deploy import OnnxModel
    from dlopt.train import load

    test = load_data(load(run).config.data).test
    return torch.from_numpy(OnnxModel.load(run / file).run(test.x.numpy())), test.y


def test_eval_of_a_quantized_run_scores_its_int8_file(int8_run):
    from dlopt.train import evaluate

    int8, y = _ort_test_outputs(int8_run, "model.int8.onnx")
    fp32, _ = _ort_test_outputs(int8_run, "model.onnx")
    got = evaluate(int8_run)
    assert got["loss"] == pytest.approx(float(F.cross_entropy(int8, y)), rel=1e-5)
    assert got["loss"] != pytest.approx(float(F.cross_entropy(fp32, y)), rel=1e-5)
    assert got["accuracy"] == pytest.approx(float((int8.argmax(1) == y).float().mean()))
    assert got["accuracy"] == json.loads((int8_run / "summary.json").read_text())["test"]["accuracy"]


def test_eval_cli_names_the_scored_file(int8_run):
    res = CliRunner().invoke(app, ["eval", str(int8_run), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == f"scored {int8_run / 'model.int8.onnx'} (INT8, ONNX Runtime)"
    plain = CliRunner().invoke(app, ["eval", str(int8_run.parent / "run"), "--threads", "1"])
    assert plain.exit_code == 0 and plain.output.startswith("loss "), plain.output


def test_eval_of_an_onnx_only_directory_says_what_it_holds(int8_run, tmp_path):
    """A ``dlopt quantize FILE.onnx`` output holds ONNX files and a summary, no weights."""
    import shutil

    for f in ("model.onnx", "model.int8.onnx", "summary.json"):
        shutil.copy2(int8_run / f, tmp_path / f)
    line = one_error_line(CliRunner().invoke(app, ["eval", str(tmp_path)]), 2)
    assert "holds ONNX files only (model.int8.onnx, model.onnx)" in line
    assert line.endswith(f"dlopt bench {tmp_path / 'model.int8.onnx'}")
