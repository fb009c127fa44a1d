"""The run directory contract (``docs/architecture.md``)::

    runs/<name>/
        config.yaml          resolved config (re-runnable)
        metrics.jsonl        one row per epoch
        checkpoints/         last/best (see dlopt.train.checkpoint)
        summary.json         schema_version, task, dataset, model, params, macs, epochs,
                             train_seconds, best_epoch, val, test, ...
        model.safetensors    the weights to deploy
        preprocess.json/.npz the fitted preprocessing
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dlopt.errors import ConfigError
from dlopt.train.checkpoint import atomic_write
from dlopt.train.callbacks.metrics_log import jsonable

__all__ = [
    "CONFIG", "METRICS", "SUMMARY", "WEIGHTS", "CHECKPOINTS", "SCHEMA_VERSION",
    "prepare_run_dir", "write_json", "read_json",
]

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
WEIGHTS = "model.safetensors"
CHECKPOINTS = "checkpoints"
SCHEMA_VERSION = 1


def prepare_run_dir(run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
                    resumable: bool = True) -> Path:
    """Create ``run_dir``; a non-empty one is refused unless resuming or overwriting
    (``resumable=False``: the caller has no ``--resume``, and its error line says so)."""
    d = Path(run_dir)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: pick one")
    if d.exists() and not d.is_dir():
        raise ConfigError(f"run directory {d} is a file")
    nonempty = d.is_dir() and any(d.iterdir())
    if resume:
        if not (d / CHECKPOINTS / "last").exists():
            raise ConfigError(f"nothing to resume in {d}: no {CHECKPOINTS}/last checkpoint")
        return d
    if nonempty and not overwrite:
        how = "--resume to continue it or --overwrite" if resumable else "--overwrite"
        raise ConfigError(f"run directory {d} is not empty; pass {how} to start over")
    try:
        if nonempty:
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a read-only or full file system, no permission: the user's to fix
        raise ConfigError(f"run directory {d}: cannot create it: {exc.strerror or exc}") from None
    return d


def write_json(path: str | Path, obj: Any) -> None:
    """Atomic, indented JSON (NaN/Inf written as null)."""
    atomic_write(path, json.dumps(jsonable(obj), indent=1) + "\n")


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}") from None
    except ValueError:
        raise ConfigError(f"file {path} is not valid JSON") from None
