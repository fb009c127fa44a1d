"""``data.target`` names a csv column; every other source has its labels already (npz: array
y, image folders: their class folders, IDX: the label files, built-in sets their own) and
refuses it in one line instead of ignoring it: in the config schema, before any command runs,
and in ``load_dataset`` (one rule, ``dlopt.data.check_target``)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.config import dump_config, load_config, parse_config
from dlopt.data import DATASETS, FORMATS, load_dataset, splits_of
from dlopt.errors import ConfigError

runner = CliRunner()
_MLP = {"name": "mlp", "width": 8, "depth": 1}


def _errors(name: str, target: str, **kw) -> set[str]:
    """The one-line ConfigError(s) of the config schema and of ``load_dataset`` (one when they agree)."""
    lines = set()
    for call in (lambda: parse_config({"data": {"name": name, "target": target, **kw}}),
                 lambda: load_dataset(name, target=target, **kw)):
        with pytest.raises(ConfigError) as info:
            call()
        lines.add(str(info.value))
    assert all("\n" not in line for line in lines), lines
    return lines


def _npz(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32), y=np.arange(40) % 2)
    return p


def _refusal(name: str, labels: str, target: str = "label") -> str:
    return (f"data.target={target!r}: {name} has its own labels ({labels}); data.target is only for "
            f"csv:PATH, where it names the target column (remove it)")


def test_npz_refuses_a_target(tmp_path):
    p = _npz(tmp_path)
    assert _errors(f"npz:{p}", "label") == {_refusal(f"npz:{p}", "array 'y'")}
    assert load_dataset(f"npz:{p}").info.num_classes == 2  # without it, as before


@pytest.mark.parametrize("fmt, labels", [("imagefolder", "its class sub-folders"), ("idx", "its label files")])
def test_image_formats_refuse_a_target(fmt, labels, image_dir, idx_set):
    path = image_dir if fmt == "imagefolder" else idx_set
    assert _errors(f"{fmt}:{path}", "y") == {_refusal(f"{fmt}:{path}", labels, "y")}
    load_dataset(f"{fmt}:{path}", subset=20, test_subset=5)


@pytest.mark.parametrize("name", DATASETS.names())
def test_builtin_datasets_refuse_a_target_before_reading(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DLOPT_CACHE_DIR", str(tmp_path))  # mnist1d would generate, not refuse
    assert _errors(name, "label") == {_refusal(name, "built-in dataset")}


def test_a_data_dir_idx_set_refuses_a_target(idx_set):
    assert _errors("tiny", "y", data_dir=str(idx_set.parent)) == {_refusal("tiny", "its label files", "y")}


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
                                      "model": _MLP,
                                      "train": {"epochs": 1, "progress": False}}))
    res = runner.invoke(app, ["train", str(config), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith("error: data.target='label': npz:")
    assert not (tmp_path / "run").exists()


def test_cli_tune_refuses_it_before_a_study_starts(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"name": "iris", "target": "label"}, "model": _MLP,
        "train": {"epochs": 1, "progress": False, "threads": 1},
        "search": {"space": {"train.optim.lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}}}}))
    res = runner.invoke(app, ["tune", str(config), "--trials", "1", "--study-dir", str(tmp_path / "study")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output == f"error: {_refusal('iris', 'built-in dataset')}\n"
    assert not (tmp_path / "study").exists()


@pytest.fixture
def user_format():
    """A format registered through the public FORMATS, saying nothing of its labels."""
    def read_mine(*, path: str):  # pragma: no cover - refused before it reads
        raise AssertionError("not read")

    FORMATS.register("mine", help="a user's reader")(read_mine)
    yield "mine"
    FORMATS._entries.pop("mine")


def test_a_user_format_without_labels_info_is_not_called_built_in(user_format):
    name = f"{user_format}:rows.bin"
    assert _errors(name, "y") == {_refusal(name, "from its reader", "y")}
