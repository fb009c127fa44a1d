"""Config error lines name keys as the file spells them: no pydantic union tags
(``grid.list[any]``), and an unknown key says which key was probably meant."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.config import TuneConfig, load_config, parse_config
from dlopt.errors import ConfigError

runner = CliRunner()


def _space_error(axis: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config({"search": {"space": {"train.optim.lr": {"type": "float", "low": 0.1, "high": 1.0,
                                                               **axis}}}}, TuneConfig)
    return str(err.value)


@pytest.mark.parametrize("grid", ["abc", {"a": 1}, 1.5])
def test_a_union_value_names_the_key_and_every_allowed_kind(grid):
    line = _space_error({"grid": grid})
    assert line.startswith("search.space.train.optim.lr.grid")
    assert "[" not in line.split(":")[0] and ".int" not in line  # no union member names
    assert "a valid list or a valid integer" in line


def test_a_union_with_a_valid_member_shape_keeps_its_key():
    line = _space_error({"grid": [0.1, "x"]})
    assert line == "search.space.train.optim.lr.grid: 'x' is not a number in [0.1, 1]"


@pytest.mark.parametrize("override, meant", [
    ("train.lr=0.1", "did you mean 'train.optim.lr'?"),           # a key of a section inside
    ("lr=0.1", "did you mean 'train.optim.lr'?"),
    ("train.momentum=0.5", "did you mean 'train.optim.momentum'?"),
    ("seed=1", "did you mean 'data.seed' or 'train.seed'?"),
    ("train.epochz=3", "did you mean 'train.epochs'?"),           # a close spelling
    ("trian={epochs: 3}", "did you mean 'train'?"),
    ("train.optim.lrr=0.1", "did you mean 'train.optim.lr'?"),
    ("data.preprocess=[{op: pca, n_compnents: 3}]", "did you mean 'data.preprocess.0.n_components'?"),
])
def test_an_unknown_key_suggests_the_key_meant(override, meant):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    line = str(err.value)
    assert line.startswith(f"unknown key '{override.split('=')[0]}") and "; allowed: " in line
    assert line.endswith(f"; {meant}")


def test_an_unknown_key_far_from_any_gets_no_guess():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["train.zzzqqq=1"])
    assert "did you mean" not in str(err.value)


def test_cli_set_with_a_misplaced_key_says_where_it_lives(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"train": {"epochs": 1}}))
    res = runner.invoke(app, ["train", str(config), "--set", "train.lr=0.1", "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith("error: unknown key 'train.lr'") and "did you mean 'train.optim.lr'?" in res.output
    assert not (tmp_path / "r").exists()
