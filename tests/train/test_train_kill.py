"""Exact resume across real process deaths: `python -m dlopt train` is SIGKILLed at seeded
random steps (several times, wherever it happens to be: mid-step, mid-save), stopped once
with SIGTERM, resumed each time, and must end bitwise equal to an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from dlopt.config import load_config
from dlopt.train import train_run

from train_helpers import assert_same_weights, weights

CONFIG = {
    "name": "killme",
    "data": {"name": "mnist", "subset": 300, "test_subset": 100},
    "model": {"name": "lenet5", "width": 0.5},
    "train": {
        "epochs": 3, "batch_size": 48, "deterministic": True, "threads": 1, "progress": False,
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.01},
        "schedule": {"name": "one-cycle"},
        "regularization": {"mixup_alpha": 0.2, "ema_decay": 0.9},
        "checkpoint": {"every_steps": 1},
    },
}
TOTAL_STEPS = 18  # 3 epochs x 6 batches


def _last_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoints" / "last" / "manifest.json").read_text())["step"]
    except (OSError, ValueError, KeyError):  # not written yet, or swapped while reading
        return -1


def _start(cfg: Path, run: Path, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dlopt", "train", str(cfg), "--run-dir", str(run)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(cmd + (["--resume"] if resume else []), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _interrupt(proc: subprocess.Popen, run: Path, at_step: int, sig: int) -> tuple[int, str]:
    """Send ``sig`` once the last checkpoint reached ``at_step``; returns (rc, stderr)."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and _last_step(run) < at_step and time.monotonic() < deadline:
        time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_killed_and_resumed_runs_end_bitwise_equal(tmp_path) -> None:
    cfg_file = tmp_path / "killme.yaml"
    cfg_file.write_text(yaml.safe_dump(CONFIG))
    reference = train_run(load_config(cfg_file), run_dir=tmp_path / "reference")

    run = tmp_path / "killed"
    rng = random.Random(1234)
    targets = sorted(rng.sample(range(1, TOTAL_STEPS - 2), 4))
    signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGKILL]
    interrupted = 0
    for i, (target, sig) in enumerate(zip(targets, signals)):
        proc = _start(cfg_file, run, resume=i > 0)
        rc, err = _interrupt(proc, run, target, sig)
        if rc == 0:  # finished before the signal landed: nothing left to interrupt
            break
        interrupted += 1
        if sig == signal.SIGTERM:
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert rc == 143 and "Traceback" not in err, err
            assert "stopped by SIGTERM" in lines[-1] and "--resume" in lines[-1]
        else:
            assert rc == -signal.SIGKILL, err
    assert interrupted >= 3, "the run finished before most interruptions landed"

    final = _start(cfg_file, run, resume=True)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert out.startswith("test loss") and "accuracy" in out

    assert_same_weights(weights(reference.run_dir), weights(run))
    ref_rows = [{k: v for k, v in r.items() if k != "seconds"} for r in reference.history]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows] == json.loads(json.dumps(ref_rows))
