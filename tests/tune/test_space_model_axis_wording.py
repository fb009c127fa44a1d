"""A ``when:`` on a model option no axis sets, with a ``model.name`` axis drawing models of
which only some have the option, names each drawn model's default (or that it has none)."""

from __future__ import annotations

import pytest

from dlopt.config import TuneConfig, parse_config
from dlopt.errors import ConfigError

LR = {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}


def test_a_condition_on_an_option_only_some_drawn_models_have_names_each_model():
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"name": "mlp"}, "search": {"space": {
            "train.optim.lr": {**LR, "when": {"model.depth": 5}},
            "model.name": ["mlp", "lenet5"]}}}, TuneConfig)
    assert str(err.value).startswith("search.space.train.optim.lr.when: model.depth is not a search axis and "
                                     "is left at the default of the model drawn (mlp: 2, lenet5: no such "
                                     "option), never 5, so the axis would never be sampled")
