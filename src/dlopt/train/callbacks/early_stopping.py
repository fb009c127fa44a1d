"""Early stopping: stop when the monitored metric has not improved for ``patience`` epochs.

The decision is the pure function :func:`should_stop` over the metric's history; the
callback only records values and keeps them in its ``state_dict`` (restored on resume).
Patience follows the monitored metric alone: an epoch that only ties it (an accuracy stuck at
1.0 while ``val_loss`` falls) is no improvement here, though the best checkpoint takes it when
its ``val_loss`` is lower; monitor ``val_loss`` to train on while the loss still falls.
A NaN epoch never improves, but a metric that has had no finite value yet (an AUC undefined
on a one-class validation split) never stops the run: there is no best to fall short of.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Sequence

from dlopt.errors import ConfigError
from dlopt.train.schedules import run_epochs

__all__ = ["EarlyStopping", "should_stop"]

log = logging.getLogger(__name__)


def _improves(value: float, best: float, *, mode: str, min_delta: float) -> bool:
    return value < best - min_delta if mode == "min" else value > best + min_delta


def should_stop(values: Sequence[float], *, mode: str = "min", patience: int = 3,
                min_delta: float = 0.0, monitor: str = "metric") -> tuple[bool, str]:
    """``(stop, reason)`` after epochs with ``values`` of the monitored metric.

    An epoch improves when it beats the best so far by more than ``min_delta``; stop when
    the last ``patience`` epochs did not. NaN never improves, and without any finite value
    there is no best to miss: never stop then.
    """
    best, best_i = math.nan, -1
    for i, v in enumerate(values):
        if math.isfinite(v) and (best_i < 0 or _improves(v, best, mode=mode, min_delta=min_delta)):
            best, best_i = v, i
    waited = len(values) - 1 - best_i
    if best_i >= 0 and waited >= patience:
        return True, (f"{monitor} did not improve by more than {min_delta} for {waited} epochs "
                      f"(best {best:.6g} at epoch {best_i + 1})")
    return False, ""


class EarlyStopping:
    """Asks the loop to stop when :func:`should_stop` says so."""

    order = 100
    state_key = "early_stopping"

    def __init__(self, *, monitor: str = "val_loss", mode: str = "min", patience: int = 3,
                 min_delta: float = 0.0) -> None:
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.values: list[float] = []
        self.reason = ""

    def on_fit_start(self, state: Any) -> None:
        # said, not refused: a quick run of a longer recipe is a fair thing to ask for
        per_epoch = getattr(state.schedule, "steps_per_epoch", None) or state.steps_per_epoch  # optimizer steps
        epochs = run_epochs(state.epochs, state.max_steps, per_epoch)
        if self.patience >= epochs:
            log.warning("train.early_stopping.patience=%d with a run of %d epoch(s): it stops after %d epochs "
                        "without improvement, so it can never trigger", self.patience, epochs, self.patience)

    def on_epoch_end(self, state: Any) -> None:
        if self.monitor not in state.metrics:
            have = ", ".join(sorted(state.metrics)) or "none (no validation split)"
            raise ConfigError(f"train.early_stopping.monitor={self.monitor!r} is not computed; available: {have}")
        self.values.append(float(state.metrics[self.monitor]))
        if len(self.values) == 1 and not math.isfinite(self.values[0]):  # once, at the run's first epoch
            log.warning("train.early_stopping.monitor=%s is %s at epoch 1 (e.g. an AUC on a one-class validation "
                        "split): until it has a finite value early stopping never stops the run", self.monitor,
                        self.values[0])
        stop, reason = should_stop(self.values, mode=self.mode, patience=self.patience,
                                   min_delta=self.min_delta, monitor=self.monitor)
        if stop:
            self.reason = reason
            state.request_stop(f"early stopping: {reason}")

    def state_dict(self) -> dict[str, Any]:
        return {"values": list(self.values), "reason": self.reason}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.values, self.reason = [float(v) for v in state["values"]], str(state["reason"])
