"""The guard: a pure decision ``judge(before, after, budget) -> (accepted, reason)``.

The guard's metric follows the task (:data:`GUARD_METRICS`): top-1 accuracy for
classification, R2 for regression (accuracy of a real-valued target is 0 for every model, so
any candidate would pass). A point is 0.01 of the metric either way. It is compared on the
validation split (the test split stays for reporting; a run
without one gets a held-out part of its training split, see ``_holdout``); a
latency budget is checked at ``latency_batch``. A step that is slower than its input on
ONNX Runtime is reported (``slower_bs<N>``), never hidden, whatever the verdict.
"""

from __future__ import annotations

from typing import Any

from dlopt.compress._types import Budget

__all__ = ["judge", "slower_flags", "accuracy_drop_pt", "GUARD_METRICS", "guard_metric", "budget_record"]

# task -> the metric the guard judges (higher is better for both; both are read in points)
GUARD_METRICS = {"classification": "accuracy", "regression": "r2"}


def guard_metric(task: str) -> str:
    """The metric the guard judges a run of ``task`` on."""
    return GUARD_METRICS[task]


def budget_record(budget: Budget, metric: str) -> dict[str, Any]:
    """The ``compression.budget`` record: the budget and the metric it is counted in."""
    return {"metric": metric, "max_drop_pt": budget.max_drop_pt, "latency_ms": budget.latency_ms}


def accuracy_drop_pt(before: dict[str, Any], after: dict[str, Any], key: str = "val_accuracy") -> float | None:
    """Points (0.01 of the metric ``key``) lost from ``before`` to ``after`` (negative: a
    gain); None if unknown."""
    a, b = before.get(key), after.get(key)
    if a is None or b is None:
        return None
    return round(100.0 * (float(a) - float(b)), 4)


def _latency(m: dict[str, Any], batch: int) -> float | None:
    lat = m.get("latency_ms") or {}
    value = lat.get(str(batch))
    return None if value is None else float(value)


def judge(before: dict[str, Any], after: dict[str, Any], budget: Budget, *,
          latency_batch: int = 64, no_slower: bool = False) -> tuple[bool, str]:
    """Accept ``after`` unless it loses more than ``budget.max_drop_pt`` validation points of
    its guard metric (``after["metric"]``; accuracy when unnamed) against ``before``, misses
    ``budget.latency_ms`` or (``no_slower``) runs measurably slower
    than ``before`` at ``latency_batch``; the reason is one line either way."""
    metric = after.get("metric") or before.get("metric") or "accuracy"
    key = f"val_{metric}"
    drop = accuracy_drop_pt(before, after, key)
    if drop is None:
        return False, f"no validation {metric} measured: cannot check the {metric} budget"
    if drop > budget.max_drop_pt:
        return False, (f"{metric} dropped {drop:.2f} pt on validation "
                       f"({before[key]:.4f} -> {after[key]:.4f}); budget {budget.max_drop_pt:g} pt")
    if budget.latency_ms is not None:
        lat = _latency(after, latency_batch)
        if lat is None:
            return False, f"latency budget {budget.latency_ms:g} ms set but latency was not measured"
        if lat > budget.latency_ms:
            return False, (f"p50 latency {lat:.3f} ms at batch {latency_batch} misses the budget "
                           f"{budget.latency_ms:g} ms")
    if no_slower and slower_flags(before, after).get(f"slower_bs{latency_batch}"):
        return False, (f"slower on ONNX Runtime at batch {latency_batch} ({_latency(before, latency_batch):.3f} -> "
                       f"{_latency(after, latency_batch):.3f} ms): keeping the input model")
    # 0.0 - drop, not -drop: an unchanged accuracy read "change -0.00 pt"
    return True, f"within budget: validation {metric} change {0.0 - drop:+.2f} pt (budget -{budget.max_drop_pt:g} pt)"


def slower_flags(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``{"speedup_bs<N>": before/after, "slower_bs<N>": bool}`` for every batch timed in both."""
    out: dict[str, Any] = {}
    for b, t_after in (after.get("latency_ms") or {}).items():
        t_before = (before.get("latency_ms") or {}).get(b)
        if t_before is None or t_after is None or t_after <= 0:
            continue
        speedup = float(t_before) / float(t_after)
        out[f"speedup_bs{b}"] = round(speedup, 3)
        # 5%: the deploy bench's noise floor between processes
        out[f"slower_bs{b}"] = speedup < 1 / 1.05
    return out
