"""bench/host_memory.py on a small run: both variants train in fresh processes, the policy
removes the page faults, the JSON has its keys, and bad arguments are one line."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = str(ROOT / "bench" / "host_memory.py")


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the policy is a glibc malloc setting")
def test_host_memory_bench_reports_both_variants() -> None:
    # 3 rounds (the bench reports medians over fresh processes): one process's burst of page
    # faults (a clean-clone CI run saw 29.6 per step over 5 steps) does not decide the result
    out = subprocess.run([sys.executable, BENCH, "--batches", "128", "--steps", "5", "--rounds", "3",
                          "--threads", "1"], capture_output=True, text=True, check=True, timeout=300)
    row = json.loads(out.stdout)["rows"]["128"]
    assert row["off_step_ms"] > 0 and row["on_step_ms"] > 0
    assert abs(row["saved"] - (1 - row["on_step_ms"] / row["off_step_ms"])) < 1e-3
    assert row["off_faults_per_step"] >= 0 and row["on_faults_per_step"] < 2  # off: usually ~1,500


@pytest.mark.parametrize("args", [["--batches", "0"], ["--batches", "x"], ["--rounds", "0"]])
def test_bad_arguments_are_one_line_exit_2(args: list[str]) -> None:
    out = subprocess.run([sys.executable, BENCH, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    assert "--batches is a comma list of integers >= 1" in out.stderr
