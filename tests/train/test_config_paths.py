"""A written config records the data file a run read: a relative ``csv:rows.csv`` is read
from the working directory, and re-running the config from elsewhere must not silently read
another file (or fail without saying relative to what)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.config import load_config
from dlopt.train import train_run

from train_helpers import one_error_line

_CFG = {"data": {"name": "csv:rows.csv", "target": "label"},
        "model": {"name": "mlp", "width": 8, "depth": 1},
        "train": {"epochs": 1, "batch_size": 16, "progress": False, "threads": 1}}


def _rows(folder: Path, seed: int) -> Path:
    """A separable 2-class table of 80 rows in ``folder/rows.csv``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y = np.arange(80) % 2
    x = rng.normal(size=(80, 3)) + y[:, None]
    lines = ["a,b,c,label"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{k}" for r, k in zip(x, y)]
    (folder / "rows.csv").write_text("\n".join(lines) + "\n")
    return folder / "rows.csv"


def _config(folder: Path, **over) -> Path:
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump({**_CFG, **over}))
    return path


def _recorded(run: Path) -> str:
    return yaml.safe_load((run / "config.yaml").read_text())["data"]["name"]


@pytest.fixture
def two_dirs(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """``a/`` and ``b/`` each holding a different rows.csv; the working directory is ``a``."""
    a, b = tmp_path / "a", tmp_path / "b"
    _rows(a, 0), _rows(b, 1)
    monkeypatch.chdir(a)
    return a, b


def test_a_runs_config_records_the_absolute_data_file_and_reruns_it_from_elsewhere(two_dirs, monkeypatch):
    a, b = two_dirs
    train_run(load_config(_config(a)), run_dir=a / "runs" / "x")
    assert _recorded(a / "runs" / "x") == f"csv:{a / 'rows.csv'}"
    monkeypatch.chdir(b)  # b/rows.csv exists: a relative record would train on it
    res = CliRunner().invoke(app, ["train", str(a / "runs" / "x" / "config.yaml"), "--run-dir", "y"])
    assert res.exit_code == 0, res.output
    assert _recorded(b / "y") == f"csv:{a / 'rows.csv'}"


def test_a_missing_relative_file_names_the_directory_it_was_looked_for_in(two_dirs, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["train", str(_config(two_dirs[0])), "--run-dir", "r"])
    line = one_error_line(res, 2)
    assert line == f"error: missing file: rows.csv (relative to the working directory {tmp_path})"


def test_resume_compares_resolved_paths(two_dirs, monkeypatch):
    a, b = two_dirs
    run = a / "runs" / "x"
    train_run(load_config(_config(a)), run_dir=run)
    # the same file by its relative path: not a changed config
    train_run(load_config(_config(a), ["train.epochs=2"]), run_dir=run, resume=True)
    # a config.yaml written before paths were recorded absolute resumes too
    text = (run / "config.yaml").read_text().replace(f"csv:{a / 'rows.csv'}", "csv:rows.csv")
    (run / "config.yaml").write_text(text)
    train_run(load_config(_config(a), ["train.epochs=3"]), run_dir=run, resume=True)
    # the same relative path from b names b's file: refused, naming both
    monkeypatch.chdir(b)
    res = CliRunner().invoke(app, ["train", str(_config(a)), "--run-dir", str(run), "--resume",
                                   "--set", "train.epochs=4"])
    line = one_error_line(res, 2)
    assert f"data.name was 'csv:{a / 'rows.csv'}', now 'csv:{b / 'rows.csv'}'" in line


def test_a_studys_best_config_records_the_absolute_data_file(two_dirs):
    a, _ = two_dirs
    search = {"trials": 1, "space": {"train.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}}
    res = CliRunner().invoke(app, ["tune", str(_config(a, name="s", search=search)), "--study-dir", "st"])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load((a / "st" / "best_config.yaml").read_text())["data"]["name"] == f"csv:{a / 'rows.csv'}"
