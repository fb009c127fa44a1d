"""A run trained on a relative ``csv:`` path records it absolute (summary.json as config.yaml):
it evaluates and exports its dataset from another working directory, and so does a run saved
before, whose summary kept the relative name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.deploy import OnnxModel
from dlopt.deploy._run import run_metadata
from dlopt.train import load
from train_helpers import train_table

runner = CliRunner()


@pytest.fixture
def relative_run(tmp_path, monkeypatch) -> tuple[Path, str]:
    """A run trained in ``tmp/a`` on ``csv:rows.csv``, the working directory then ``tmp/b``."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    rows = "".join(f"{i % 9},{(i * 7) % 5},{int(i % 9 > 4)}\n" for i in range(60))
    (tmp_path / "a" / "rows.csv").write_text("p,q,y\n" + rows)
    monkeypatch.chdir(tmp_path / "a")
    run = train_table(tmp_path, {"name": "csv:rows.csv", "target": "y", "preprocess": [{"op": "zscore"}]})
    monkeypatch.chdir(tmp_path / "b")
    return run, f"csv:{tmp_path / 'a' / 'rows.csv'}"


def _eval_accuracy(run: Path) -> float:
    res = runner.invoke(app, ["eval", str(run)])
    assert res.exit_code == 0, res.output
    return float(next(ln.split()[1] for ln in res.stdout.splitlines() if ln.startswith("accuracy")))


def test_eval_and_export_from_another_directory(relative_run, tmp_path):
    run, absolute = relative_run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"] == summary["data_info"]["name"] == absolute
    assert _eval_accuracy(run) == pytest.approx(summary["test"]["accuracy"], abs=1e-4)
    res = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "b" / "m.onnx"), "--exporter", "legacy"])
    assert res.exit_code == 0, res.output
    assert OnnxModel.load(tmp_path / "b" / "m.onnx").metadata.dataset["name"] == absolute


def test_a_run_whose_summary_kept_the_relative_name_still_evaluates(relative_run):
    run, absolute = relative_run
    summary = json.loads((run / "summary.json").read_text())
    summary["dataset"] = summary["data_info"]["name"] = "csv:rows.csv"  # as runs before wrote it
    (run / "summary.json").write_text(json.dumps(summary))
    assert _eval_accuracy(run) == pytest.approx(summary["test"]["accuracy"], abs=1e-4)
    assert run_metadata(load(run))["dataset"]["name"] == absolute
