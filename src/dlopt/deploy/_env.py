"""The environment saved beside benchmark numbers: CPU model and flags, cores, versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["capture_environment", "cpu_info"]

_PACKAGES = ("dlopt", "torch", "onnxruntime", "onnx", "numpy", "fastapi", "uvicorn")


def cpu_info(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict[str, Any]:
    """CPU model name and flags from ``/proc/cpuinfo`` (platform strings elsewhere)."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return {"model": model, "flags": flags}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = value.split()
    return {"model": model, "flags": flags}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


_SOURCE = Path(__file__).resolve().parents[3]  # the checkout dlopt runs from (no .git when installed)


def _git(root: Path, *args: str) -> str | None:
    """``git -C root ARGS`` output, None without a git checkout or when git fails."""
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _git_commit(root: Path = _SOURCE) -> str | None:
    return (_git(root, "rev-parse", "--short", "HEAD") or "").strip() or None


def _git_dirty(root: Path = _SOURCE) -> bool | None:
    """Whether the checkout has uncommitted changes (its commit alone does not say what ran)."""
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status.strip())


def capture_environment(threads: int | None = None) -> dict[str, Any]:
    """CPU, logical cores (total and usable), benchmark threads, the machine's load average
    (other work competing for the cores skews every timing), OS, Python, library versions,
    git commit and whether the checkout had uncommitted changes (None: not a git checkout)."""
    from dlopt.train.device import usable_cpus

    affinity = usable_cpus()
    load = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu_info(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "threads": threads,
        "load_average": load,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "git_dirty": _git_dirty(),
    }
