"""A mistyped model option gets the did-you-mean the config's own keys get."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.errors import ModelError
from dlopt.models import check_model_options


@pytest.mark.parametrize("key, guess", [("widht", "width"), ("dpeth", "depth"), ("hiden", "hidden")])
def test_a_mistyped_option_names_the_close_one(key, guess):
    with pytest.raises(ModelError, match=f"^unknown option '{key}' for model 'mlp'; valid: activation, depth, "
                                         f"dropout, hidden, init, norm, width; did you mean '{guess}'\\?$"):
        check_model_options("mlp", {key: 3})


def test_an_option_like_none_gets_no_guess():
    with pytest.raises(ModelError, match=r"width$"):
        check_model_options("mlp", {"zzz": 3})


def test_cli_set_of_a_mistyped_option_is_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"name": "mnist", "subset": 100}, "model": {"name": "mlp"}}))
    res = CliRunner().invoke(app, ["train", str(cfg), "--set", "model.widht=3", "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert "unknown option 'widht' for model 'mlp'" in res.output and "did you mean 'width'?" in res.output
    assert res.output.count("\n") == 1
