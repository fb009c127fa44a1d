"""bench/pool_first.py on a tiny batch: both variants train and the JSON has its keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pool_first_bench_reports_both_variants() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "pool_first.py"), "--batches", "8,16",
                          "--rounds", "2", "--block", "1", "--threads", "1"],
                         capture_output=True, text=True, check=True, timeout=300)
    report = json.loads(out.stdout)
    assert [r["batch"] for r in report["rows"]] == [8, 16]
    for row in report["rows"]:
        assert row["plain_ms"] > 0 and row["pool_first_ms"] > 0
        assert abs(row["saved"] - (1 - row["pool_first_ms"] / row["plain_ms"])) < 1e-3
