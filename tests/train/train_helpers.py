"""Helpers for the training tests: tiny real configs and weight comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from dlopt.config import RunConfig, parse_config

DATA = {"name": "mnist", "subset": 300, "test_subset": 100}
MODEL = {"name": "lenet5", "width": 0.5}


def tiny_config(*, data: dict[str, Any] | None = None, model: dict[str, Any] | None = None,
                **train: Any) -> RunConfig:
    """A half-width LeNet-5 run on a real MNIST slice (270 train / 30 val / 100 test): 2 epochs
    of 6 steps of batch 48, one thread, quiet, deterministic. ``train`` keys override train.* entries."""
    base: dict[str, Any] = {"epochs": 2, "batch_size": 48, "progress": False, "deterministic": True,
                            "threads": 1}  # 2 OpenMP threads on a shared 2-core box run ~10x slower
    return parse_config({"name": "tiny", "data": {**DATA, **(data or {})},
                         "model": model or MODEL, "train": {**base, **train}})


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The deployable weights of a finished run."""
    return load_file(str(Path(run_dir) / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Bitwise equality of two state dicts."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


class StopAt:
    """A callback that raises at a given optimizer step (after that step, before its
    checkpoint): an in-process stand-in for a crash."""

    order = 500  # after the step's work, before Checkpointing (1000) writes it

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, state: Any) -> None:
        if state.step >= self.step and not state.accumulating:
            raise Crash(f"crash at step {state.step}")


class Crash(RuntimeError):
    """Raised by :class:`StopAt`."""


class Recorder:
    """Records the events it sees, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda state: self.events.append(name[3:])
        raise AttributeError(name)


def one_error_line(res: Any, code: int) -> str:
    """The single ``error: ...`` line of a CLI result with exit ``code`` (no traceback)."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert lines[0].startswith("error: ")
    return lines[0]


def train_table(tmp: Path, data: dict[str, Any], *, name: str = "run") -> Path:
    """``dlopt train`` of a tiny MLP (1 epoch) on the table ``data`` (a data config) into
    ``tmp/name``; the run directory."""
    import yaml
    from typer.testing import CliRunner

    from dlopt.cli import app

    cfg = {"name": name, "data": data, "model": {"name": "mlp", "width": 8, "depth": 1},
           "train": {"epochs": 1, "batch_size": 16, "progress": False, "threads": 1}}
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["train", str(tmp / f"{name}.yaml"), "--run-dir", str(tmp / name),
                                   "--device", "cpu", "--threads", "1"])
    assert res.exit_code == 0, res.output
    return tmp / name
