"""Stage options refused before anything runs speak of the stage's own keys, in one line
(lr_find's infinite rates were refused only at run time, in ``--max-lr`` flag words; a bench
``samples`` below its floor in pydantic's words)."""

from __future__ import annotations

import math

import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.errors import ConfigError
from dlopt.pipeline import parse_pipeline

from pipeline_helpers import lenet_base

runner = CliRunner()


def _pipe(stage: dict) -> dict:
    return {"name": "p", "base": lenet_base(subset=200), "stages": [{"name": "train"}, stage]}


@pytest.mark.parametrize("stage, line", [
    ({"name": "lr_find", "max_lr": math.inf}, "stages[1] 'lr_find': max_lr=inf: need a finite number > 0"),
    ({"name": "lr_find", "min_lr": math.inf}, "stages[1] 'lr_find': min_lr=inf: need a finite number > 0"),
    ({"name": "bench", "inputs": ["train"], "samples": 60},
     "stages[1] 'bench': samples=60 is too few; allowed: an integer >= 64, or null for the whole test split"),
])
def test_a_bad_stage_option_is_one_line_naming_the_key(stage, line):
    with pytest.raises(ConfigError) as err:
        parse_pipeline(_pipe(stage))
    assert str(err.value) == f"pipeline: {line}"


@pytest.mark.parametrize("stage", [
    {"name": "lr_find", "max_lr": 1.0, "min_lr": 1e-5},
    {"name": "bench", "inputs": ["train"], "samples": 64},
    {"name": "bench", "inputs": ["train"], "samples": None},
])
def test_the_allowed_values_pass(stage):
    parse_pipeline(_pipe(stage))


def test_cli_run_refuses_an_infinite_max_lr_before_training(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_pipe({"name": "lr_find", "steps": 5})).replace("steps: 5", "steps: 5\n  max_lr: .inf"))
    res = runner.invoke(app, ["run", str(path), "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output == f"error: {path}: stages[1] 'lr_find': max_lr=inf: need a finite number > 0\n"
    assert "--max-lr" not in res.output and not (tmp_path / "r").exists()


SPACE = {"train.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
WIDHT = ("unknown option 'widht' for model 'lenet5'; valid: activation, channels, dropout, hidden, init, "
         "norm, pool, width; did you mean 'width'?")


@pytest.mark.parametrize("over, line", [
    # the base's mistake was said against the first training stage that merged it
    ("base.train=5", "base.train=5: Input should be a valid dictionary or instance of TrainConfig"),
    ("base.train.epochs=0", "base.train.epochs=0: Input should be greater than or equal to 1"),
    ("base.model.widht=1", "base: unknown option 'widht' for model 'lenet5'; valid: activation, channels, "
                           "dropout, hidden, init, norm, pool, width; did you mean 'width'?"),
    # a stage's config key lost its config. prefix
    ("stages.tune.config.train.epochs=0",
     "stages[1] 'tune': config.train.epochs=0: Input should be greater than or equal to 1"),
    ("stages.tune.search.trials=0",
     "stages[1] 'tune': search.trials=0: Input should be greater than or equal to 1"),
    ("stages.s.variants.adam.train.epochs=0",
     "stages[2] 's': variants.adam.train.epochs=0: Input should be greater than or equal to 1"),
    # a model option's mistake (the validator's words name no key) was put on the first variant,
    # or said without config
    ("stages.s.config.model.widht=2", f"stages[2] 's': config: {WIDHT}"),
    ("stages.tune.config.model.widht=2", f"stages[1] 'tune': config: {WIDHT}"),
    ("stages.s.variants.adam.model.widht=2", f"stages[2] 's': variants.adam: {WIDHT}"),
])
def test_a_bad_key_of_base_or_a_stage_config_is_named_as_the_user_wrote_it(tmp_path, over, line):
    adam = {"train": {"optim": {"name": "adam"}}}
    doc = {"name": "p", "base": lenet_base(subset=200),
           "stages": [{"name": "lr_find", "steps": 5}, {"name": "tune", "trials": 1, "search": {"space": SPACE}},
                      {"name": "s", "type": "sweep", "variants": {"adam": adam}}]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    res = runner.invoke(app, ["run", str(path), "--set", over, "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert res.output == f"error: {path}: {line}\n"
    assert not (tmp_path / "r").exists()
