"""Elastic restarts through `dlopt train --nproc 2 --max-restarts K`: a rank killed with
SIGKILL makes torchrun restart the group, which resumes from the last checkpoint; with no
restarts left the command fails in bounded time."""

from __future__ import annotations

import json
import os
import re
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


def _train_args(tmp_path: Path) -> list[str]:
    """``python -m dlopt train CONFIG --run-dir RUN`` for CONFIG written in ``tmp_path``."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    return [sys.executable, "-m", "dlopt", "train", str(config), "--run-dir", str(tmp_path / "run")]


def _error_lines(out: str) -> list[str]:
    """dlopt's error lines and torchrun's own log lines (W/E + date): the group's failure
    should read as one line, as in one process."""
    return [line for line in out.splitlines() if line.startswith("error: ") or re.match(r"[WE]\d{4} ", line)]


def _saved_step(run_dir: Path) -> int:
    return int((run_dir / "checkpoints" / "last").resolve().name.split("-")[1])  # step-<8 digits>-<hash>


def _launch(tmp_path: Path, restarts: int, *extra: str, env: dict | None = None) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([*_train_args(tmp_path), "--nproc", "2", "--max-restarts", str(restarts), *extra],
                            env=env or worker_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, tmp_path / "run"


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


def _wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path) -> None:
    deadline = time.monotonic() + 180
    while not (run_dir / "checkpoints" / "last").exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.05)


def _kill_rank_after_checkpoint(proc: subprocess.Popen, run_dir: Path, rank: int = 1,
                                sig: int = signal.SIGKILL) -> int:
    _wait_for_checkpoint(proc, run_dir)
    pid = _rank_pid(proc.pid, rank)
    assert pid is not None, "rank process not found"
    os.kill(pid, sig)
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
    assert "Traceback" not in out and not _error_lines(out), out[-3000:]  # the restart is no error


def test_no_restarts_left_fails_in_bounded_time(tmp_path):
    proc, run_dir = _launch(tmp_path, restarts=0)
    _kill_rank_after_checkpoint(proc, run_dir)
    out = proc.communicate(timeout=120)[0]  # torchrun stops the survivor: no hang
    assert proc.returncode == 1, out[-4000:]
    # one line naming the lost process, not rank 0's gloo error nor torchrun's log lines
    assert _error_lines(out) == ["error: process rank 1 of 2 was killed (signal 9, SIGKILL) and the group "
                                 "stopped after 0 restart(s); continue with --resume from its last checkpoint, "
                                 "if one was saved"], out[-3000:]
    assert not (run_dir / "summary.json").exists()
    assert "Traceback" not in out


def test_sigterm_on_one_rank_stops_all_at_one_saved_step(tmp_path):
    """A signal reaches the ranks at different steps: they agree on the step to stop after,
    and rank 0 (the writer) saves it, instead of failing in a collective its peer left."""
    proc, run_dir = _launch(tmp_path, 0, "--set", "train.epochs=500", "--set", "train.checkpoint.every_steps=1000")
    _kill_rank_after_checkpoint(proc, run_dir, sig=signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, out[-4000:]
    lines = _error_lines(out)  # rank 0's, the one that saved; not one per process
    assert len(lines) == 1 and lines[0].startswith(f"error: stopped by SIGTERM (on another process) at step "
                                                   f"{_saved_step(run_dir)} "), out[-3000:]
    assert lines[0].endswith(f"checkpoint saved in {run_dir / 'checkpoints' / 'last'}; continue with --resume")
    assert "Traceback" not in out


def test_sigterm_to_launcher_prints_one_line(tmp_path):
    """`kill` of `dlopt train --nproc`: torchrun passes SIGTERM on, rank 0 saves, and the
    command says once where the checkpoint is (not each process, then the launcher again)."""
    proc, run_dir = _launch(tmp_path, 0, "--set", "train.epochs=500", "--set", "train.checkpoint.every_steps=1000")
    _wait_for_checkpoint(proc, run_dir)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, out[-4000:]
    lines = _error_lines(out)
    assert len(lines) == 1 and lines[0].startswith(f"error: stopped by SIGTERM at step {_saved_step(run_dir)} "), \
        out[-3000:]
    assert lines[0].endswith(f"checkpoint saved in {run_dir / 'checkpoints' / 'last'}; continue with --resume")


def test_error_every_process_refuses_exits_2(tmp_path):
    """A config error only the processes can see (here: a metric the task never computes)
    is the user's: exit 2 like one process, not 1 as if the run had crashed."""
    env = {k: v for k, v in worker_env().items() if k != "OMP_NUM_THREADS"}  # torchrun sets it: no banner
    proc, run_dir = _launch(tmp_path, 0, "--set", "train.metric=r2", env=env)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2, out[-4000:]
    lines = _error_lines(out)  # rank 0's; the other's would repeat it
    assert len(lines) == 1 and "train.metric='r2' is not computed" in lines[0], out[-3000:]
    assert "Traceback" not in out and "OMP_NUM_THREADS" not in out


def test_resume_with_another_global_batch_refused(tmp_path):
    """batch: per_rank makes the global batch grow with the process count: a one-process
    checkpoint resumed by 2 processes would silently train on a doubled batch."""
    per_rank = ("--set", "train.distributed.batch=per_rank")
    single = subprocess.run([*_train_args(tmp_path), "--set", "train.epochs=1", *per_rank],
                            env=worker_env(), capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr[-3000:]
    proc, run_dir = _launch(tmp_path, 0, "--resume", "--set", "train.epochs=2", *per_rank)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2, out[-4000:]
    assert "the checkpoint was trained with a global batch of 32 (1 process(es)), this run has 64 (2)" in out
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 1  # untouched


def test_sigkill_to_launcher_stops_its_processes_at_a_saved_step(tmp_path):
    """A launcher killed with SIGKILL cannot pass anything on: its processes went on training
    and writing the run directory unseen. Linux now sends them SIGTERM when it dies, so they
    save a checkpoint and stop."""
    proc, run_dir = _launch(tmp_path, 0, "--set", "train.epochs=500", "--set", "train.checkpoint.every_steps=1000")
    _wait_for_checkpoint(proc, run_dir)
    ranks = [_rank_pid(proc.pid, r) for r in (0, 1)]
    assert None not in ranks, "rank processes not found"
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
              for pid in ranks):
        assert time.monotonic() < deadline, "the launcher's processes outlived it by a minute"
        time.sleep(0.1)
    assert not (run_dir / "summary.json").exists(), "the orphaned processes trained to the end"
    assert (run_dir / "checkpoints" / "last").exists()
