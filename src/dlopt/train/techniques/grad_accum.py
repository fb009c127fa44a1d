"""Gradient accumulation: one optimizer step per ``k`` batches (an effective batch k times
larger). The loss is divided by the size of its group so the summed gradient is a mean; the
last group of an epoch may be shorter and still steps, so every epoch ends on a step."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["GradAccumulation", "accumulation_steps"]


def accumulation_steps(batches: int, k: int) -> int:
    """Optimizer steps per epoch of ``batches`` batches."""
    return math.ceil(batches / k)


class GradAccumulation:
    """Marks micro-batches as ``state.accumulating`` so the loop skips their step."""

    order = -20  # scale the loss before fp16 scaling

    def __init__(self, k: int) -> None:
        self.k = k

    def _group_size(self, state: Any) -> int:
        n = state.steps_per_epoch
        start = (state.batch_in_epoch - 1) // self.k * self.k
        return min(self.k, n - start)

    def on_before_backward(self, state: Any) -> None:
        state.backward_loss = state.backward_loss / self._group_size(state)

    def on_after_backward(self, state: Any) -> None:
        b = state.batch_in_epoch
        state.accumulating = b % self.k != 0 and b < state.steps_per_epoch
