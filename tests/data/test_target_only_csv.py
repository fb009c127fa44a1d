"""``data.target`` names a csv column; the other formats have their labels already (npz: array
y, image folders: their class folders, IDX: the label files) and refuse it in one line instead
of ignoring it."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.data import load_dataset

from data_helpers import load_error

runner = CliRunner()


def _npz(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32), y=np.arange(40) % 2)
    return p


def test_npz_refuses_a_target(tmp_path):
    p = _npz(tmp_path)
    assert load_error(f"npz:{p}", target="label") == (
        f"data.target='label': npz file {p} takes its labels from array 'y'; data.target names the "
        f"target column of a csv: dataset (remove it)")
    assert load_dataset(f"npz:{p}").info.num_classes == 2  # without it, as before


@pytest.mark.parametrize("fmt, labels", [("imagefolder", "its class sub-folders"), ("idx", "its label files")])
def test_image_formats_refuse_a_target(fmt, labels, image_dir, idx_set):
    path = image_dir if fmt == "imagefolder" else idx_set
    assert f"{path} takes its labels from {labels}; data.target names" in load_error(f"{fmt}:{path}", target="y")
    load_dataset(f"{fmt}:{path}", subset=20, test_subset=5)


def test_cli_train_refuses_it_before_a_run_directory_is_made(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"name": f"npz:{_npz(tmp_path)}", "target": "label"},
                                      "model": {"name": "mlp", "width": 8, "depth": 1},
                                      "train": {"epochs": 1, "progress": False}}))
    res = runner.invoke(app, ["train", str(config), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith("error: data.target='label': npz file ")
    assert not (tmp_path / "run").exists()
