"""``dlopt datasets`` through typer's CliRunner."""

from __future__ import annotations

from typer.testing import CliRunner

from dlopt.cli import app

runner = CliRunner()


def test_datasets_lists_builtins_and_data_dir_sets(idx_set):
    res = runner.invoke(app, ["datasets", "--data-dir", str(idx_set.parent)], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    for needle in ("mnist", "fashion-mnist", "mnist1d", "iris", "diabetes", "regression",
                   "1x28x28", "60k/10k", "tiny", "1x6x6", "60/20", "imagefolder:PATH"):
        assert needle in res.output, needle


def test_datasets_without_data_dir_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("DLOPT_DATA_DIR", raising=False)
    res = runner.invoke(app, ["datasets"], env={"COLUMNS": "160"})
    assert res.exit_code == 0 and "not found: needs <data-dir>/fashion-mnist" in res.output
