"""The training state every event handler sees (and the counters a checkpoint restores)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
from torch import nn

__all__ = ["State"]


@dataclass(eq=False)
class State:
    """Mutable state of one fit.

    Counters: ``epoch`` = completed epochs (1-based once one is done), ``step`` = optimizer
    steps taken, ``batch_in_epoch`` = batches consumed in the current epoch. ``metrics``
    holds the latest evaluation (``val_loss``, ``val_accuracy``, ...); ``history`` one row
    per epoch (= ``metrics.jsonl``).
    """

    module: nn.Module  # the raw model: weights are saved from and loaded into this one
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    loader: Any
    device: torch.device
    epochs: int
    schedule: Any = None
    max_steps: int | None = None
    evaluator: Callable[["State"], dict[str, float]] | None = None
    handlers: list[Any] = field(default_factory=list)
    run_dir: Path | None = None
    task: str = "classification"
    # what the loop calls: forward may be compiled, evaluation may use EMA weights
    model: Any = None
    eval_model: nn.Module | None = None
    forward_context: Callable[[], ContextManager[Any]] = contextlib.nullcontext
    optimizer_step: Callable[[], Any] | None = None
    # counters (restored on resume)
    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    samples_seen: int = 0
    train_seconds: float = 0.0  # banked at ``clock``; see elapsed()
    clock: float = 0.0
    epoch_t0: float = 0.0  # elapsed() when the current epoch started
    # per-batch scratch, replaced every batch
    x: Any = None
    y: Any = None
    outputs: Any = None
    loss: Any = None
    backward_loss: Any = None
    accumulating: bool = False
    skip_step: bool = False
    grad_norm: torch.Tensor | None = None
    # per-epoch
    loss_sum: torch.Tensor | None = None
    loss_batches: int = 0
    train_loss: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    # control
    stop: bool = False
    stop_reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = self.module
        if self.eval_model is None:
            self.eval_model = self.module
        if self.optimizer_step is None:
            self.optimizer_step = self.optimizer.step

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch of the training loader."""
        return len(self.loader)

    @property
    def done(self) -> bool:
        """True when ``max_steps`` is reached."""
        return self.max_steps is not None and self.step >= self.max_steps

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current epoch (or batch)."""
        self.stop, self.stop_reason = True, reason

    def counters(self) -> dict[str, Any]:
        """The plain-data counters a checkpoint stores."""
        return {"epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch,
                "samples_seen": self.samples_seen, "train_seconds": self.elapsed(),
                "epoch_t0": self.epoch_t0, "history": self.history, "metrics": self.metrics,
                # the running epoch's loss, so a mid-epoch resume logs the same train_loss
                "loss_sum": float(self.loss_sum) if self.loss_sum is not None else 0.0,
                "loss_batches": self.loss_batches, "epoch_lr": self.extra.get("epoch_lr"),
                "stop": self.stop, "stop_reason": self.stop_reason}

    def load_counters(self, c: dict[str, Any]) -> None:
        self.epoch, self.step = int(c["epoch"]), int(c["step"])
        self.batch_in_epoch, self.samples_seen = int(c["batch_in_epoch"]), int(c["samples_seen"])
        self.train_seconds, self.epoch_t0 = float(c["train_seconds"]), float(c["epoch_t0"])
        self.clock = time.perf_counter()
        self.loss_sum = torch.tensor(float(c["loss_sum"]), dtype=torch.float32, device=self.device)
        self.loss_batches = int(c["loss_batches"])
        self.stop, self.stop_reason = bool(c["stop"]), str(c["stop_reason"])
        if c.get("epoch_lr") is not None:
            self.extra["epoch_lr"] = float(c["epoch_lr"])
        self.history = list(c["history"])
        self.metrics = dict(c["metrics"])

    def start_clock(self) -> None:
        self.clock = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of fitting so far, including earlier sessions of a resumed run."""
        return self.train_seconds + (time.perf_counter() - self.clock if self.clock else 0.0)
