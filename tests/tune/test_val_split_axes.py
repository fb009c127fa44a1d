"""A val_ objective needs a validation split in some trial, not in the config alone: an axis
drawing ``data.val_fraction`` > 0 or ``train.cv`` supplies one; an axis drawing only 0 (or
only no folds) does not, unless a ``when:`` leaves some trials at the config's split."""

from __future__ import annotations

import pytest

from dlopt.config import TuneConfig, parse_config
from dlopt.errors import ConfigError
from dlopt.tune import check_training_metrics

LR = {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}


def _cfg(val_fraction: float, axes: dict) -> TuneConfig:
    return parse_config({"data": {"name": "mnist", "val_fraction": val_fraction},
                         "train": {"optim": {"name": "adam"}},
                         "search": {"space": {"train.optim.lr": LR, **axes},
                                    "objectives": [{"metric": "val_loss"}]}}, TuneConfig)


@pytest.mark.parametrize("axes", [
    {"data.val_fraction": {"type": "float", "low": 0.1, "high": 0.3}},
    {"data.val_fraction": [0.0, 0.2]},
    {"train.cv": [2, 3]},
    {"train.cv": {"type": "int", "low": 2, "high": 3}},
])
def test_an_axis_drawing_a_validation_split_supplies_one(axes):
    check_training_metrics(_cfg(0.0, axes))


@pytest.mark.parametrize("base, axes", [
    (0.0, {}),
    (0.0, {"train.cv": [None]}),
    (0.2, {"data.val_fraction": [0.0]}),  # every trial draws 0: the config's 0.2 is never used
])
def test_no_trial_with_a_validation_split_is_refused(base, axes):
    with pytest.raises(ConfigError, match="the runs have no validation split"):
        check_training_metrics(_cfg(base, axes))


def test_a_switched_off_axis_leaves_some_trials_the_configs_split():
    # the adam trials do not sample data.val_fraction and keep the config's 0.2
    check_training_metrics(_cfg(0.2, {"train.optim.name": ["adam", "sgd"],
                                      "data.val_fraction": {"type": "categorical", "choices": [0.0],
                                                            "when": {"train.optim.name": "sgd"}}}))
