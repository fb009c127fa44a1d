"""bench/train_speed.py in its tiny mode: every contestant and section runs, and the JSON
has the keys other tools read. No time is asserted (speed lives in the bench only)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench_module():
    spec = importlib.util.spec_from_file_location("train_speed_bench", ROOT / "bench" / "train_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    bench = _bench_module()
    out = tmp_path_factory.mktemp("bench") / "train_speed.json"
    returned = bench.main(["--smoke", "--threads", "1", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written.keys() == returned.keys()
    return written


def test_contestants_report_the_contract(smoke: dict) -> None:
    contestants = ["naive", "dlopt"]
    if importlib.util.find_spec("lightning") is not None:
        contestants.append("lightning")
    else:
        assert "error" in smoke["lightning"]["runs"][0]
    for name in contestants:
        c = smoke[name]
        assert {"seconds", "epochs", "accuracy", "reached", "runs"} <= c.keys(), name
        assert c["seconds"] > 0 and c["epochs"] == 1, name
        assert 0.0 <= c["accuracy"] <= 1.0, name
        assert len(c["runs"][0]["curve"]) == 1, name
    # 2k samples and one epoch cannot reach 99 %: the runs say so instead of pretending
    assert smoke["naive"]["reached"] is False
    # dlopt trained for real through train_run: its summary reports the same test accuracy
    run = smoke["dlopt"]["runs"][0]
    assert math.isclose(run["summary_test_accuracy"], run["accuracy"], abs_tol=2e-3)


def test_ratios_overhead_and_flops(smoke: dict) -> None:
    for key in ("ratio_naive_over_dlopt", "ratio_lightning_over_dlopt", "step_overhead_vs_minimal"):
        assert key in smoke
    assert smoke["ratio_naive_over_dlopt"] > 0
    assert smoke["ratio_naive_over_dlopt_min"] <= smoke["ratio_naive_over_dlopt_max"]
    assert math.isfinite(smoke["step_overhead_vs_minimal"])
    assert smoke["overhead"]["dlopt_step_ms"] > 0 and smoke["overhead"]["minimal_step_ms"] > 0
    flops = smoke["flops"]
    assert flops["macs_per_sample"] > 300_000  # LeNet-5 on 28x28: ~341k MACs
    assert set(flops["peaks_gflops"]) == {"fp32_matmul", "fp32_onednn", "bf16_matmul", "bf16_onednn"}
    assert 0 < flops["fraction_of_fp32_onednn"]
    assert smoke["settings"]["smoke"] is True and smoke["settings"]["train_samples"] == 2000
