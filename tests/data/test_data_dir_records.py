"""A data directory given as a relative ``$DLOPT_DATA_DIR`` is resolved against the working
directory: a run's written config and summary record the absolute folder (a relative record
re-read from elsewhere names another folder), and a file missing from an IDX folder names
the absolute folder it was looked for in."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.config import RunConfig, config_to_dict, parse_config
from dlopt.data._idx import IDX_FILES
from dlopt.data._registry import DATA_DIR_ENV
from dlopt.train import train_run

from data_helpers import load_error

_MODEL = {"name": "mlp", "width": 8, "depth": 1}
_TRAIN = {"epochs": 1, "batch_size": 16, "progress": False, "threads": 1}


def _cfg(name: str) -> RunConfig:
    data = {"name": name, "subset": 40, "test_subset": 10}
    return parse_config({"data": data, "model": _MODEL, "train": _TRAIN})


def test_a_relative_data_dir_env_is_recorded_absolute_and_reruns_elsewhere(tmp_path, monkeypatch, make_idx_set):
    a, b = tmp_path / "a", tmp_path / "b"
    make_idx_set(a / "data" / "tiny")
    b.mkdir()
    monkeypatch.chdir(a)
    monkeypatch.setenv(DATA_DIR_ENV, "data")
    train_run(_cfg("tiny"), run_dir=a / "run")
    written = yaml.safe_load((a / "run" / "config.yaml").read_text())
    assert written["data"]["data_dir"] == str(a / "data")
    summary = json.loads((a / "run" / "summary.json").read_text())
    assert summary["data_info"]["source"] == str(a / "data" / "tiny")
    monkeypatch.chdir(b)  # "data" is relative to a, where the run read it
    res = CliRunner().invoke(app, ["train", str(a / "run" / "config.yaml"), "--run-dir", "again"])
    assert res.exit_code == 0, res.output


def test_only_sets_read_from_the_data_dir_record_it(tmp_path, monkeypatch, make_idx_set):
    make_idx_set(tmp_path / "data" / "fashion-mnist")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_DIR_ENV, "data")
    assert config_to_dict(_cfg("fashion-mnist"))["data"]["data_dir"] == str(tmp_path / "data")
    assert config_to_dict(_cfg("mnist"))["data"]["data_dir"] is None  # reads no data directory


def test_a_missing_idx_file_names_the_absolute_folder_searched(tmp_path, monkeypatch, make_idx_set):
    folder = make_idx_set(tmp_path / "data" / "fashion-mnist")
    (folder / IDX_FILES["test_x"]).unlink()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_DIR_ENV, "data")
    expected = (f"IDX folder {folder}: missing file {IDX_FILES['test_x']}; an IDX set holds the four files "
                f"{', '.join(IDX_FILES.values())}")
    assert load_error("idx:data/fashion-mnist") == expected
    assert load_error("fashion-mnist") == expected


def test_in_memory_data_records_no_data_dir_and_resumes_without_it(tmp_path, monkeypatch):
    """In-memory arrays are read from no data directory: recording ``$DLOPT_DATA_DIR`` made a
    resume without the variable a changed config."""
    import numpy as np

    import dlopt

    x = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    y = np.arange(40) % 2
    (tmp_path / "envd").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_DIR_ENV, "envd")
    kw = {"batch_size": 16, "progress": False, "threads": 1, "run_dir": "run"}
    dlopt.fit(_MODEL, (x, y), epochs=1, **kw)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["data_dir"] is None
    monkeypatch.delenv(DATA_DIR_ENV)
    assert len(dlopt.fit(_MODEL, (x, y), epochs=2, resume=True, **kw).history) == 2
