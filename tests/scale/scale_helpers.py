"""Shared helpers of the scale-out tests."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def worker_env() -> dict[str, str]:
    """Environment of child processes: one thread each (2 shared cores), this checkout's code."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
