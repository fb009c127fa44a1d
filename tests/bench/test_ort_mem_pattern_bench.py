"""bench/ort_mem_pattern.py on a small range: both settings measured, the JSON has its keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ort_mem_pattern_bench_reports_both_settings() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "ort_mem_pattern.py"), "--models",
                          "lenet5", "--max-batch", "8", "--rounds", "2", "--runs", "5"],
                         capture_output=True, text=True, check=True, timeout=300)
    report = json.loads(out.stdout)
    (row,) = report["rows"]
    assert row["model"] == "lenet5" and report["max_batch"] == 8
    for setting in ("pattern_on", "pattern_off"):
        assert row[setting]["rss_mib_start"] > 0
        assert len(row[setting]["growth_mib_after_round"]) == 2
        assert all(row["latency"][f"{setting}_b{n}_ms"] > 0 for n in (1, 64))
