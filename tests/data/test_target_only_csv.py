"""``data.target`` names a csv column; every other source has its labels already (npz: array
y, image folders: their class folders, IDX: the label files, built-in sets their own) and
refuses it in one line instead of ignoring it."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.config import dump_config, load_config, parse_config
from dlopt.data import DATASETS, load_dataset, splits_of

from data_helpers import load_error

runner = CliRunner()


def _npz(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32), y=np.arange(40) % 2)
    return p


def _refusal(name: str, labels: str, target: str = "label") -> str:
    return (f"data.target={target!r}: {name} has its own labels ({labels}); data.target is only for "
            f"csv:PATH, where it names the target column (remove it)")


def test_npz_refuses_a_target(tmp_path):
    p = _npz(tmp_path)
    assert load_error(f"npz:{p}", target="label") == _refusal(f"npz:{p}", "array 'y'")
    assert load_dataset(f"npz:{p}").info.num_classes == 2  # without it, as before


@pytest.mark.parametrize("fmt, labels", [("imagefolder", "its class sub-folders"), ("idx", "its label files")])
def test_image_formats_refuse_a_target(fmt, labels, image_dir, idx_set):
    path = image_dir if fmt == "imagefolder" else idx_set
    assert load_error(f"{fmt}:{path}", target="y") == _refusal(f"{fmt}:{path}", labels, "y")
    load_dataset(f"{fmt}:{path}", subset=20, test_subset=5)


@pytest.mark.parametrize("name", DATASETS.names())
def test_builtin_datasets_refuse_a_target_before_reading(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DLOPT_CACHE_DIR", str(tmp_path))  # mnist1d would generate, not refuse
    assert load_error(name, target="label") == _refusal(name, "built-in dataset")


def test_a_data_dir_idx_set_refuses_a_target(idx_set):
    assert load_error("tiny", data_dir=idx_set.parent, target="y") == _refusal("tiny", "its label files", "y")


def test_a_written_config_rereads_for_every_source(tmp_path, image_dir, idx_set):
    csv = tmp_path / "rows.csv"
    csv.write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    sources = [{"name": "iris"}, {"name": f"npz:{_npz(tmp_path)}"}, {"name": f"imagefolder:{image_dir}"},
               {"name": f"idx:{idx_set}"}, {"name": "tiny", "data_dir": str(idx_set.parent)},
               {"name": f"csv:{csv}", "target": "label"}]
    for data in sources:
        path = tmp_path / "c.yaml"
        dump_config(parse_config({"data": data, "model": {"name": "mlp"}}), path)
        assert yaml.safe_load(path.read_text())["data"]["target"] == data.get("target")  # null unless set
        assert len(splits_of(load_config(path).data).train[1]) > 0


def test_cli_train_refuses_it_before_a_run_directory_is_made(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"name": f"npz:{_npz(tmp_path)}", "target": "label"},
                                      "model": {"name": "mlp", "width": 8, "depth": 1},
                                      "train": {"epochs": 1, "progress": False}}))
    res = runner.invoke(app, ["train", str(config), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith("error: data.target='label': npz:")
    assert not (tmp_path / "run").exists()
