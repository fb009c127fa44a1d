"""Caching and resume: a pipeline killed (SIGKILL) mid-stage resumes at that stage, inside
it from the last checkpoint, and ends with the same metrics as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dlopt.pipeline import parse_pipeline, run_pipeline

BASE = {
    "data": {"name": "mnist", "subset": 600, "test_subset": 200},
    "model": {"name": "lenet5", "width": 0.5},
    "train": {"epochs": 1, "batch_size": 32, "progress": False, "seed": 0,
              "optim": {"name": "adam", "lr": 0.003}, "checkpoint": {"every_steps": 4}},
}
STAGES = [
    {"name": "first", "type": "train"},
    {"name": "second", "type": "train", "input": "first", "config": {"train": {"epochs": 3}}},
    {"name": "export", "input": "second"},
]


def _doc(runs: Path, stages: list[dict] = STAGES, base: dict = BASE) -> dict:
    return {"name": "kill", "runs_dir": str(runs), "base": base, "stages": stages}


def _metrics(root: Path) -> dict[str, dict]:
    res = json.loads((root / "results.json").read_text())
    return {s["name"]: s["metrics"] for s in res["stages"]}


def _status(root: Path) -> dict[str, str]:
    res = json.loads((root / "results.json").read_text())
    return {s["name"]: s["status"] for s in res["stages"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run, in a fresh process like the killed one: torch state left by
    earlier tests in this process (thread count, flags) may change the last bits of a sum."""
    tmp_path = tmp_path_factory.mktemp("ref")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_doc(tmp_path / "runs")))
    cmd = [sys.executable, "-m", "dlopt", "run", str(path), "--no-report"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-800:]
    return tmp_path / "runs" / "kill"


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    return False


@pytest.mark.timeout(600)
def test_sigkill_mid_stage_then_resume_equals_uninterrupted(tmp_path_factory, reference):
    # same path length as the reference ("ref0" / "run0"): the ONNX file records its source
    # run's absolute path, so its size on disk is compared exactly too
    tmp_path = tmp_path_factory.mktemp("run")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_doc(tmp_path / "runs")))
    root = tmp_path / "runs" / "kill"
    second = root / "second"
    cmd = [sys.executable, "-m", "dlopt", "run", str(path), "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    # kill once the second stage has written a mid-training checkpoint, before it finishes
    killed = _kill_when(proc, lambda: (second / "run" / "checkpoints" / "last").exists())
    assert killed, f"the pipeline ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    assert (root / "first" / "stage.json").exists()
    assert not (second / "stage.json").exists()
    first_done = (root / "first" / "stage.json").stat().st_mtime_ns

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-800:]
    assert _status(root) == {"first": "cached", "second": "resumed", "export": "ran"}
    assert (root / "first" / "stage.json").stat().st_mtime_ns == first_done  # not redone
    assert "resuming" in done.stderr
    assert _metrics(root) == _metrics(reference)


def test_rerun_skips_unchanged_and_redoes_downstream_of_a_change(tmp_path, reference):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(reference, runs / "kill")
    root = runs / "kill"
    cfg, opts = parse_pipeline(_doc(runs))
    run_pipeline(cfg, opts, report=False)
    assert set(_status(root).values()) == {"cached"}

    changed = [dict(s) for s in STAGES]
    changed[2] = {**changed[2], "atol": 1e-3}  # only the export stage changes
    cfg, opts = parse_pipeline(_doc(runs, changed))
    run_pipeline(cfg, opts, report=False)
    assert _status(root) == {"first": "cached", "second": "cached", "export": "ran"}

    changed[1] = {**changed[1], "config": {"train": {"epochs": 1}}}  # upstream change: redo it and below
    cfg, opts = parse_pipeline(_doc(runs, changed))
    run_pipeline(cfg, opts, report=False)
    assert _status(root) == {"first": "cached", "second": "ran", "export": "ran"}


def test_a_cached_stage_whose_model_was_deleted_runs_again(tmp_path, reference):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(reference, runs / "kill")
    root = runs / "kill"
    rec = json.loads((root / "export" / "stage.json").read_text())
    (root / "export" / rec["artifacts"]["onnx"]).unlink()
    cfg, opts = parse_pipeline(_doc(runs))
    run_pipeline(cfg, opts, report=False)
    assert _status(root) == {"first": "cached", "second": "cached", "export": "ran"}
    assert (root / "export" / rec["artifacts"]["onnx"]).is_file()


def test_a_tune_stage_without_a_feasible_trial_fails_in_one_line(tmp_path):
    from dlopt.errors import RunError

    stages = [
        {"name": "tune", "type": "tune", "trials": 2, "search": {
            "space": {"train.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
            "sampler": {"name": "random", "seed": 0}, "pruner": "none",
            "constraints": [{"metric": "val_accuracy", "min": 2.0}]}},  # no trial can meet it
        {"name": "retrain", "input": "tune"},
    ]
    cfg, opts = parse_pipeline(_doc(tmp_path / "runs", stages))
    with pytest.raises(RunError) as err:
        run_pipeline(cfg, opts, report=False)
    assert str(err.value).startswith("stage 'tune': the study has no best config: none of the 2 complete "
                                     "trials meets search.constraints (trials: 2 complete); see ")
