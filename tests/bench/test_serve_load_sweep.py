"""bench/serve_load.py's batch-size sweep on a small range: a real server, the JSON keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serve_load_sweeps_every_batch_size() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "serve_load.py"), "--concurrency", "1",
                          "--duration", "1", "--sweep-rounds", "2", "--max-batch", "4"],
                         capture_output=True, text=True, check=True, timeout=300)
    report = json.loads(out.stdout)
    assert report["concurrency"]["1"]["errors"] == 0 and report["concurrency"]["1"]["requests"] > 0
    sweep = report["batch_sweep"]
    assert sweep["max_batch"] == 4 and sweep["rss_mb_start"] > 0
    assert len(sweep["rss_mb_after_round"]) == 2


def test_serve_load_refuses_a_negative_sweep() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "serve_load.py"), "--sweep-rounds", "-1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--sweep-rounds must be >= 0" in out.stderr
