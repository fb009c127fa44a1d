"""The CLI boundary: help, version, and one-line errors with exit code 2 (in-process)."""

from __future__ import annotations

from typer.testing import CliRunner

from dlopt.cli import app

runner = CliRunner()


def test_help_lists_verbs():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for verb in ("train", "datasets", "models", "version"):
        assert verb in res.output


def test_version():
    res = runner.invoke(app, ["version"])
    assert res.exit_code == 0
    assert "dlopt 0.1.0" in res.output and "torch 2.13.0" in res.output


def test_missing_config_file_exit_2(tmp_path):
    res = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not found" in lines[0]
    assert "Traceback" not in res.output


def test_bad_override_exit_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 1\n")
    res = runner.invoke(app, ["train", str(cfg), "--set", "train.optim.lr=-0.1"])
    assert res.exit_code == 2
    assert "train.optim.lr" in res.output and "Traceback" not in res.output


def test_a_run_name_that_is_not_one_directory_is_refused_before_anything_is_deleted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keep = tmp_path / "runs" / "other" / "summary.json"
    keep.parent.mkdir(parents=True)
    keep.write_text("{}")
    cfg = tmp_path / "c.yaml"
    for name in ("''", "'..'", "'../x'", "a/b"):  # "" would be runs/ itself under --overwrite
        cfg.write_text(f"name: {name}\ndata: {{name: digits}}\nmodel: {{name: mlp}}\ntrain: {{epochs: 1}}\n")
        res = runner.invoke(app, ["train", str(cfg), "--overwrite"])
        assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
        assert "a run name is one directory name" in res.output
    assert keep.exists() and not (tmp_path / "x").exists()
