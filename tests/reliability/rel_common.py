"""Shared pieces of the reliability scenarios: tiny real run configs, subprocess helpers,
bitwise comparison of whole checkpoints, process memory.

Every scenario (``rel_*.py``) is a plain function that returns ``{"passed": bool, ...figures}``
and lists what went wrong under ``"failures"``. The CI tests (``test_*.py`` here) call them at
CI sizes; ``bench/reliability.py`` calls them at bench sizes and prints the figures.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# the training tests' helpers (tiny configs, weight comparison) are reused, not copied
sys.path.insert(0, str(ROOT / "tests" / "train"))

# timings that legitimately differ between an interrupted and an uninterrupted run
VOLATILE_KEYS = frozenset({"seconds", "train_seconds", "epoch_t0"})


def run_config(*, epochs: int = 3, every_steps: int | None = 1, seed: int = 0, **train: Any) -> dict[str, Any]:
    """A half-width LeNet-5 on a real MNIST slice (6 steps of batch 48 per epoch), one
    thread, deterministic, with the stateful techniques a resume must restore (AdamW,
    one-cycle, mixup RNG, EMA)."""
    base: dict[str, Any] = {
        "epochs": epochs, "batch_size": 48, "deterministic": True, "threads": 1, "progress": False,
        "seed": seed,
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.01},
        "schedule": {"name": "one-cycle"},
        "regularization": {"mixup_alpha": 0.2, "ema_decay": 0.9},
        "checkpoint": {"every_steps": every_steps},
    }
    return {"name": "reliability", "data": {"name": "mnist", "subset": 300, "test_subset": 100},
            "model": {"name": "lenet5", "width": 0.5}, "train": {**base, **train}}


STEPS_PER_EPOCH = 6  # 270 training samples / batch 48, last partial batch kept


_WORKDIR: Path | None = None


def workdir() -> Path:
    """A scratch folder for this process, removed at exit."""
    global _WORKDIR
    if _WORKDIR is None:
        _WORKDIR = Path(tempfile.mkdtemp(prefix="dlopt-reliability-"))
        atexit.register(shutil.rmtree, _WORKDIR, ignore_errors=True)
    return _WORKDIR


def fresh_dir(name: str) -> Path:
    """A new, empty sub-folder of :func:`workdir`."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir()))


_REFERENCES: dict[str, Path] = {}


def reference_run(cfg: dict[str, Any]) -> Path:
    """An uninterrupted run of ``cfg`` by ``python -m dlopt train`` (cached per config).

    A fresh process like the interrupted ones: python's global RNG state at the end of a run
    depends on what the process imported before (rich, via scikit-learn, draws from it at
    import), so an in-process reference would differ there for reasons unrelated to resume.
    """
    key = json.dumps(cfg, sort_keys=True)
    if key not in _REFERENCES:
        folder = fresh_dir("reference")
        run = folder / "run"
        proc = start_train(write_yaml(cfg, folder / "c.yaml"), run, resume=False)
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"reference run failed: {err.strip()[-500:]}")
        _REFERENCES[key] = run
    return _REFERENCES[key]


def write_yaml(cfg: dict[str, Any], path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    return path


def start_train(cfg_file: Path, run: Path, *, resume: bool) -> subprocess.Popen:
    """``python -m dlopt train`` in its own process (a real process to kill)."""
    cmd = [sys.executable, "-m", "dlopt", "train", str(cfg_file), "--run-dir", str(run)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(cmd + (["--resume"] if resume else []), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def last_step(run: Path) -> int:
    """The step of ``checkpoints/last`` (-1 while none is complete)."""
    try:
        return json.loads((run / "checkpoints" / "last" / "manifest.json").read_text())["step"]
    except (OSError, ValueError, KeyError):  # not written yet, or swapped while reading
        return -1


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen, timeout: float = 180.0) -> bool:
    """Poll ``cond`` every 5 ms while ``proc`` lives; True when it held in time."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two nested checkpoint payloads differ (tensors compared bitwise with
    ``torch.equal``; timing keys ignored)."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
        return [] if same else [path or "tensor"]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(map(str, set(a) ^ set(b)))}"]
        out: list[str] = []
        for k in a:
            if k not in VOLATILE_KEYS:
                out += differences(a[k], b[k], f"{path}.{k}" if path else str(k))
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []  # e.g. an AUC over a split that lacks a class
    return [] if a == b else [path or "value"]


def checkpoint_differences(run_a: Path, run_b: Path) -> dict[str, list[str]]:
    """Bitwise comparison of the final checkpoints of two runs, by part: model weights,
    optimizer, RNG states, everything else (loader, counters, handlers, EMA)."""
    from dlopt.train import read_checkpoint

    a, b = read_checkpoint(run_a), read_checkpoint(run_b)
    rest_a = {"tensors": a.tensors, **{k: v for k, v in a.state.items() if k not in ("optimizer", "rng")}}
    rest_b = {"tensors": b.tensors, **{k: v for k, v in b.state.items() if k not in ("optimizer", "rng")}}
    return {
        "model": differences(a.weights, b.weights),
        "optimizer": differences(a.state.get("optimizer"), b.state.get("optimizer")),
        "rng": differences(a.state.get("rng"), b.state.get("rng")),
        "other": differences(rest_a, rest_b),
    }


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def result(failures: list[str], **figures: Any) -> dict[str, Any]:
    """The scenario result: ``passed`` first, figures, then the first failures (if any)."""
    return {"passed": not failures, **figures, "failures": failures[:20]}
