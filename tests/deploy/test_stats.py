"""Benchmark statistics and verdicts (pure functions), and the environment record."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlopt.deploy._env import capture_environment, cpu_info
from dlopt.deploy._stats import NOISE_FLOOR, latency_stats, verdict


def test_latency_stats_on_known_values():
    s = latency_stats([1.0, 2.0, 3.0, 4.0, 100.0], batch_size=8)
    assert s["p50_ms"] == 3.0 and s["runs"] == 5
    assert s["iqr_ms"] == 2.0 and s["mad_ms"] == 1.0
    assert s["p99_ms"] > s["p95_ms"] > s["p50_ms"]
    assert s["throughput"] == pytest.approx(8 * 1000 / 3.0)
    with pytest.raises(ValueError):
        latency_stats([], batch_size=1)


def _stats(p50: float, iqr: float) -> dict[str, float]:
    return {"p50_ms": p50, "iqr_ms": iqr}


def test_verdicts_follow_the_noise_band():
    assert verdict(_stats(10, 0.1), _stats(5, 0.1))[2] == "faster"
    assert verdict(_stats(5, 0.1), _stats(10, 0.1))[2] == "slower"
    assert verdict(_stats(10, 0.1), _stats(9.8, 0.1))[2] == "no change"  # 2% < 5% floor
    # a noisy baseline widens the band: 1.3x is not enough when the IQR is half the median
    speed, threshold, word = verdict(_stats(10, 5), _stats(7.7, 0.1))
    assert word == "no change" and threshold > 0.3 and speed == pytest.approx(10 / 7.7)


def test_paired_rounds_keep_one_drifting_round_from_making_a_verdict():
    # the pooled medians say 1.65x, but only one round saw it: the baseline's process ran slow
    speed, _, word = verdict(_stats(0.057, 0.001), _stats(0.035, 0.001), paired=[1.65, 1.0, 0.98])
    assert word == "no change" and speed == pytest.approx(1.0)
    assert verdict(_stats(10, 0.1), _stats(8, 0.1), paired=[1.3, 1.2, 1.25])[2] == "faster"
    assert verdict(_stats(8, 0.1), _stats(10, 0.1), paired=[0.8, 0.7, 0.85])[2] == "slower"
    # every round must agree: a median beyond the band with one round below 1 is not faster
    assert verdict(_stats(10, 0.1), _stats(8, 0.1), paired=[1.3, 1.25, 0.97])[2] == "no change"
    # ... and each must leave the band: one round inside it is noise the others may share
    speed, threshold, word = verdict(_stats(1.0, 0.04), _stats(1.0, 0.04), paired=[1.0589, 1.0675, 1.0076])
    assert word == "no change" and speed > 1.0 + threshold
    assert verdict(_stats(1.0, 0.04), _stats(1.0, 0.04), paired=[1/1.0589, 1/1.0675, 1/1.0076])[2] == "no change"


@given(st.floats(0.01, 1e3), st.floats(0.01, 1e3), st.floats(0, 50), st.floats(0, 50))
def test_verdict_is_antisymmetric(a, b, iqr_a, iqr_b):
    sa, sb = _stats(a, iqr_a), _stats(b, iqr_b)
    flip = {"faster": "slower", "slower": "faster", "no change": "no change"}
    fwd, back = verdict(sa, sb), verdict(sb, sa)
    assert back[2] == flip[fwd[2]]
    assert fwd[1] == back[1] >= NOISE_FLOOR


def test_environment_has_cpu_threads_and_versions(tmp_path):
    env = capture_environment(threads=2)
    assert env["threads"] == 2 and env["logical_cpus"] >= 1
    assert env["versions"]["onnxruntime"] and env["versions"]["torch"]
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512f\n")
    assert cpu_info(fake) == {"model": "Test CPU 9000", "flags": ["fpu", "avx2", "avx512f"]}
    if Path("/proc/cpuinfo").exists():
        assert cpu_info()["model"] and cpu_info()["flags"]
