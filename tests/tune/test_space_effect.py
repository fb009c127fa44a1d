"""A search axis on an optimizer/schedule/loss option must be used by every choice a trial can
pair it with (the check ``dlopt train`` applies, read from the registry factories' signatures):
an axis nothing reads made trials that differ by nothing."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.config import TuneConfig, parse_config
from dlopt.errors import ConfigError

runner = CliRunner()

MOMENTUM = {"type": "float", "low": 0.5, "high": 0.95}
MIN_LR = {"type": "float", "low": 0.0, "high": 1.0e-4}


def _cfg(space, train=None):
    return parse_config({"train": train or {}, "search": {"space": space}}, TuneConfig)


@pytest.mark.parametrize("space, train, says", [
    # the fixed optimizer/schedule of every trial does not use the key
    ({"train.optim.momentum": MOMENTUM}, None,
     "train.optim.name='adam' does not use momentum (its trials would ignore the value); it applies "
     "to momentum, nesterov: set train.optim.name to one of those"),
    ({"train.schedule.min_lr": MIN_LR}, None,
     "train.schedule.name='constant' does not use min_lr"),
    ({"train.loss.huber_delta": {"type": "float", "low": 0.5, "high": 2.0}}, {"loss": {"name": "mse"}},
     "train.loss.name='mse' does not use huber_delta"),
    # an optimizer axis none of whose choices uses it (the reported tune2.yaml)
    ({"train.optim.name": ["adam", "sgd"], "train.optim.momentum": MOMENTUM}, None,
     "add one to the train.optim.name axis and give this axis when: {train.optim.name: [momentum]}"),
    # some choices use it, others not: a when: is needed
    ({"train.schedule.name": ["constant", "cosine"], "train.schedule.min_lr": MIN_LR}, None,
     "train.schedule.name='constant' does not use min_lr (its trials would ignore the value); sample it "
     "only with those that do: when: {train.schedule.name: [cosine]}"),
    # a when: that still lists a choice without the key
    ({"train.optim.name": ["adam", "momentum"],
      "train.optim.momentum": {**MOMENTUM, "when": {"train.optim.name": ["adam", "momentum"]}}}, None,
     "train.optim.name='adam' does not use momentum"),
])
def test_an_axis_a_trial_would_ignore_is_refused(space, train, says):
    with pytest.raises(ConfigError) as err:
        _cfg(space, train)
    assert str(err.value).startswith(f"search.space.{list(space)[-1]}: ")
    assert says in str(err.value)


@pytest.mark.parametrize("space, train", [
    ({"train.optim.name": ["adam", "momentum"],
      "train.optim.momentum": {**MOMENTUM, "when": {"train.optim.name": "momentum"}}}, None),
    ({"train.schedule.name": ["constant", "cosine", "polynomial"],
      "train.schedule.min_lr": {**MIN_LR, "when": {"train.schedule.name": ["cosine", "polynomial"]}}}, None),
    ({"train.optim.name": ["momentum", "nesterov"], "train.optim.momentum": MOMENTUM}, None),
    ({"train.schedule.min_lr": MIN_LR}, {"schedule": {"name": "cosine"}}),
    ({"train.optim.lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
      "train.optim.name": ["adam", "sgd"]}, None),  # every optimizer takes lr
    ({"train.loss.label_smoothing": {"type": "float", "low": 0.0, "high": 0.2}}, None),  # auto: cross-entropy
])
def test_an_axis_every_trial_uses_passes(space, train):
    _cfg(space, train)


def test_cli_tune_refuses_it_in_one_line_before_any_trial(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"search": {"trials": 1, "space": {
        "train.optim.name": ["adam", "sgd"], "train.optim.momentum": MOMENTUM}}}))
    res = runner.invoke(app, ["tune", str(path), "--study-dir", str(tmp_path / "s")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith("error: search.space.train.optim.momentum: train.optim.name='adam' "
                                 "does not use momentum")
    assert not (tmp_path / "s").exists()
