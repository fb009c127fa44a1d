"""``dlopt models`` lists every zoo model with its parameters and MACs."""

from __future__ import annotations

from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.models import list_models


def test_models_command_lists_every_model():
    res = CliRunner().invoke(app, ["models"], env={"COLUMNS": "140"})
    assert res.exit_code == 0, res.output
    rows = {line.split("│")[1].strip(): line for line in res.output.splitlines()
            if line.startswith("│") and line.split("│")[1].strip()}
    assert set(list_models()) <= set(rows)
    assert "61.61K" in rows["lenet5"] and "341.26K" in rows["lenet5"]  # params, MACs
    assert "40" in rows["gru"]  # sequence models use the MNIST-1D input
