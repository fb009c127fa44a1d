"""Targets, budget and the guard decision (pure functions)."""

from __future__ import annotations

import pytest

from dlopt.compress import Budget, judge, parse_target
from dlopt.compress.guard import slower_flags
from dlopt.errors import ConfigError


@pytest.mark.parametrize("text,kind,value", [("macs=0.5", "macs", 0.5), ("sparsity=0.25", "sparsity", 0.25),
                                              ("latency_ms=2.0", "latency_ms", 2.0)])
def test_parse_target(text, kind, value):
    t = parse_target(text)
    assert (t.kind, t.value) == (kind, value)


@pytest.mark.parametrize("text,needle", [("macs=1.5", "(0, 1)"), ("sparsity=0", "(0, 1)"), ("macs=-0.1", "(0, 1)"),
                                         ("flops=0.5", "allowed"), ("macs", "allowed"), ("macs=abc", "not a number"),
                                         ("latency_ms=0", "latency_ms > 0")])
def test_bad_target_is_one_line(text, needle):
    with pytest.raises(ConfigError) as err:
        parse_target(text)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_bad_budget():
    with pytest.raises(ConfigError, match="max-drop-pt"):
        Budget(max_drop_pt=-1)


BEFORE = {"val_accuracy": 0.90, "latency_ms": {"1": 1.0, "64": 10.0}}


def test_judge_accepts_within_budget():
    ok, why = judge(BEFORE, {"val_accuracy": 0.897, "latency_ms": {"64": 5.0}}, Budget(0.5))
    assert ok and "within budget" in why


def test_judge_unchanged_accuracy_reads_plus_zero():
    ok, why = judge(BEFORE, {"val_accuracy": 0.90}, Budget(0.5))
    assert ok and "change +0.00 pt" in why


def test_judge_rejects_over_budget():
    ok, why = judge(BEFORE, {"val_accuracy": 0.88}, Budget(0.5))
    assert not ok and "dropped 2.00 pt" in why


def test_judge_latency_budget_and_slower():
    ok, why = judge(BEFORE, {"val_accuracy": 0.9, "latency_ms": {"64": 3.0}}, Budget(0.5, latency_ms=2.0))
    assert not ok and "misses the budget" in why
    ok, why = judge(BEFORE, {"val_accuracy": 0.9, "latency_ms": {"64": 20.0}}, Budget(0.5), no_slower=True)
    assert not ok and "slower" in why
    flags = slower_flags(BEFORE, {"latency_ms": {"1": 0.5, "64": 20.0}})
    assert flags == {"speedup_bs1": 2.0, "slower_bs1": False, "speedup_bs64": 0.5, "slower_bs64": True}


def test_judge_reads_the_metric_the_measurements_name():
    """A regression measurement names r2: its points are 0.01 of R2, never accuracy's."""
    before = {"metric": "r2", "val_r2": 0.50}
    assert judge(before, {"metric": "r2", "val_r2": 0.496}, Budget(max_drop_pt=0.5)) == (
        True, "within budget: validation r2 change -0.40 pt (budget -0.5 pt)")
    ok, why = judge(before, {"metric": "r2", "val_r2": 0.40}, Budget(max_drop_pt=0.5))
    assert not ok and why.startswith("r2 dropped 10.00 pt on validation (0.5000 -> 0.4000)")
