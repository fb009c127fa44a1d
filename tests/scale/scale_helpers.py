"""Shared helpers of the scale-out tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DDP_FIT = Path(__file__).with_name("ddp_fit.py")


def worker_env() -> dict[str, str]:
    """Environment of child processes: one thread each (2 shared cores), this checkout's code."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}


def torchrun_fit(out: Path, run_dir: Path, *, timeout: float = 300, **options: Any) -> str:
    """``ddp_fit.fit(run_dir, out, **options)`` in 2 gloo processes under torchrun; its stderr."""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(DDP_FIT), str(out), str(run_dir), json.dumps(options)],
                          env=worker_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stderr


def assert_close_weights(a: dict[str, Any], b: dict[str, Any], atol: float = 1e-5) -> None:
    """Two state dicts equal within float tolerance (DDP vs one process: rounding only)."""
    import torch

    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=atol, msg=lambda m: f"{k}: {m}")
