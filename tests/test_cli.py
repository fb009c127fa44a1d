"""The CLI boundary: help, version, and one-line errors with exit code 2 (in-process)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
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


@pytest.mark.parametrize("args, line", [
    (["tune"], "error: dlopt tune: Missing argument 'config' (see 'dlopt tune --help')"),
    (["trian"], "error: dlopt: No such command 'trian'. Did you mean 'train'? "
                "(see 'dlopt --help')"),
    (["serve", "runs/x", "--port", "70000"], "error: dlopt serve: Invalid value for '--port': "
                                            "Input should be less than or equal to 65535"),
    (["train", "c.yaml", "--epochz", "3"], "error: dlopt train: No such option: --epochz"),
    (["tune", "c.yaml", "--trials", "abc"], "error: dlopt tune: Invalid value for '--trials'"),
])
def test_usage_errors_are_one_line_exit_2(args, line):
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert len(res.output.splitlines()) == 1 and res.output.startswith(line), res.output


def test_usage_error_from_the_installed_command_is_one_line():
    # dlopt.cli:main as the console script and `python -m dlopt` run it, not the test runner
    res = subprocess.run([sys.executable, "-m", "dlopt", "export"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == ("error: python -m dlopt export: Missing argument 'run' "
                          "(see 'python -m dlopt export --help')\n")


def test_bare_dlopt_prints_the_help():
    res = runner.invoke(app, [])
    assert res.exit_code == 2 and "Usage: dlopt [OPTIONS] COMMAND" in res.output


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


def test_a_torchrun_worker_exits_with_the_commands_code_and_output():
    # under torchrun (WORLD_SIZE > 1) main() leaves with os._exit: its code and output must survive
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    ok = subprocess.run([sys.executable, "-m", "dlopt", "version"], capture_output=True,
                        text=True, timeout=120, env=env)
    assert ok.returncode == 0 and ok.stdout.startswith("dlopt 0.1.0\n"), ok
    bad = subprocess.run([sys.executable, "-m", "dlopt", "train", "/nonexistent.yaml"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and bad.stderr == "error: config file not found: /nonexistent.yaml\n"
