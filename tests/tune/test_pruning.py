"""The multi-objective early-stopping rule and constraint values (pure functions)."""

from __future__ import annotations

import pytest

from dlopt.config import ConstraintSpec
from dlopt.tune import ParetoMedianRule
from dlopt.tune._pruning import Peer, constraint_values

RULE = ParetoMedianRule(n_startup_trials=3, n_warmup_steps=1)
PEERS = [
    Peer(0, {1: 0.50, 2: 0.80, 3: 0.90}, {"params": 10_000}),
    Peer(1, {1: 0.40, 2: 0.70, 3: 0.85}, {"params": 50_000}),
    Peer(2, {1: 0.45, 2: 0.75}, {"params": 200_000}),
]


def _decide(epoch, value, params, peers=PEERS):
    return RULE.decide(epoch=epoch, value=value, maximize=True, static={"params": params},
                       static_directions={"params": "minimize"}, peers=peers)


def test_below_median_and_dominated_is_stopped():
    stop, reason = _decide(2, 0.60, 100_000)
    assert stop and "dominated by trial 0" in reason and "params 10000 vs 100000" in reason


def test_below_median_but_smallest_model_keeps_running():
    # behind on accuracy, but no better trial is as small: it may end on the Pareto front
    assert _decide(2, 0.60, 5_000) == (False, "below the median but not dominated")


def test_above_median_never_stopped():
    assert _decide(2, 0.78, 1e9)[0] is False


def test_warmup_and_startup():
    assert _decide(1, 0.0, 1e9) == (False, "warm-up")
    stop, reason = _decide(3, 0.0, 1e9)  # only 2 peers reached epoch 3
    assert not stop and "2 trials reached epoch 3" in reason


def test_minimize_metric_and_no_static_objective():
    peers = [Peer(i, {2: v}, {}) for i, v in enumerate([0.3, 0.4, 0.5])]
    stop, _ = RULE.decide(epoch=2, value=0.6, maximize=False, static={}, static_directions={},
                          peers=peers)
    assert stop
    stop, _ = RULE.decide(epoch=2, value=0.35, maximize=False, static={},
                          static_directions={}, peers=peers)
    assert not stop


def test_constraint_values_follow_optuna_convention():
    cons = [ConstraintSpec(metric="params", max=100), ConstraintSpec(metric="val_accuracy", min=0.9),
            ConstraintSpec(metric="latency_ms", max=2.0)]
    assert constraint_values(cons, {"params": 150, "val_accuracy": 0.95}) == \
        pytest.approx([50, -0.05, 0.0])
