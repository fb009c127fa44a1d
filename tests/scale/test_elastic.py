"""Elastic restarts through `dlopt train --nproc 2 --max-restarts K`: a rank killed with
SIGKILL makes torchrun restart the group, which resumes from the last checkpoint; with no
restarts left the command fails in bounded time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from scale_helpers import worker_env

CONFIG = {
    "name": "elastic",
    "data": {"name": "digits"},
    "model": {"name": "mlp", "width": 32, "depth": 1},
    "train": {"epochs": 6, "batch_size": 32, "progress": False, "checkpoint": {"every_steps": 10}},
}


def _launch(tmp_path: Path, restarts: int) -> tuple[subprocess.Popen, Path]:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dlopt", "train", str(config), "--nproc", "2",
                             "--max-restarts", str(restarts), "--run-dir", str(run_dir)],
                            env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, run_dir


def _rank_pid(agent: int, rank: int) -> int | None:
    """The worker process of ``rank``: a child of the torchrun agent with RANK=<rank>."""
    children = Path(f"/proc/{agent}/task/{agent}/children").read_text().split()
    for pid in children:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return int(pid)
    return None


def _kill_rank_after_checkpoint(proc: subprocess.Popen, run_dir: Path, rank: int = 1) -> int:
    deadline = time.monotonic() + 180
    while not (run_dir / "checkpoints" / "last").exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.05)
    pid = _rank_pid(proc.pid, rank)
    assert pid is not None, "rank process not found"
    os.kill(pid, signal.SIGKILL)
    return pid


def test_killed_rank_restarts_and_resumes_from_checkpoint(tmp_path):
    proc, run_dir = _launch(tmp_path, restarts=1)
    _kill_rank_after_checkpoint(proc, run_dir)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-4000:]
    assert "restart 1 of the process group: resuming from the last checkpoint" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 6 and summary["stop_reason"] == "epochs"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert "Traceback" not in out


def test_no_restarts_left_fails_in_bounded_time(tmp_path):
    proc, run_dir = _launch(tmp_path, restarts=0)
    _kill_rank_after_checkpoint(proc, run_dir)
    out = proc.communicate(timeout=120)[0]  # torchrun stops the survivor: no hang
    assert proc.returncode == 1, out[-4000:]
    assert "error: 1 of 2 processes failed after 0 restart(s)" in out or \
        "error: 2 of 2 processes failed after 0 restart(s)" in out, out[-3000:]
    assert not (run_dir / "summary.json").exists()
    assert "Traceback" not in out
