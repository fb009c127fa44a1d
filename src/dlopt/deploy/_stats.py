"""Pure functions behind the benchmark figures: latency statistics and verdicts.

A verdict compares medians. The noise threshold is the two runs' relative IQRs combined
(``hypot(iqr_a / p50_a, iqr_b / p50_b)``), never below ``floor`` (5%): within-run spread
misses the drift between processes, which was up to ~2x on this shared machine. Measuring in
rounds (every contestant once per round) and pairing the ratios round by round is what
removes that drift from a verdict.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["latency_stats", "verdict", "NOISE_FLOOR"]

NOISE_FLOOR = 0.05


def latency_stats(times_ms: Sequence[float], batch_size: int) -> dict[str, float]:
    """p50/p95/p99, mean, IQR and MAD in ms, runs, and throughput (samples/s at the median)."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("latency_stats needs at least one timing")
    p25, p50, p75, p95, p99 = np.percentile(t, [25, 50, 75, 95, 99])
    return {
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "mean_ms": float(t.mean()),
        "iqr_ms": float(p75 - p25),
        "mad_ms": float(np.median(np.abs(t - p50))),
        "runs": int(t.size),
        "throughput": float(batch_size * 1000.0 / p50) if p50 > 0 else math.inf,
    }


def verdict(base: dict[str, float], other: dict[str, float], *, floor: float = NOISE_FLOOR,
            paired: Sequence[float] | None = None) -> tuple[float, float, str]:
    """``(speedup, noise_threshold, verdict)`` of ``other`` against ``base`` (both from
    :func:`latency_stats`): faster / slower when the median ratio leaves the noise band.

    ``paired`` holds one speedup per measurement round (both timed in the same round, so
    drift between rounds cancels): the speedup is then their median, and a verdict other
    than "no change" needs every round on the same side of 1.
    """
    if paired:
        speedup = float(np.median(paired))
    else:
        speedup = base["p50_ms"] / other["p50_ms"] if other["p50_ms"] > 0 else math.inf
    rel = [s["iqr_ms"] / s["p50_ms"] if s["p50_ms"] > 0 else 0.0 for s in (base, other)]
    threshold = max(floor, math.hypot(*rel))
    rounds = list(paired or [speedup])
    if speedup > 1.0 + threshold and min(rounds) > 1.0:
        return speedup, threshold, "faster"
    if speedup < 1.0 / (1.0 + threshold) and max(rounds) < 1.0:
        return speedup, threshold, "slower"
    return speedup, threshold, "no change"
