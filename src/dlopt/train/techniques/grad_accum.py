"""Gradient accumulation: one optimizer step per ``k`` batches (an effective batch k times
larger). The loss is divided by the size of its group so the summed gradient is a mean; the
last group of an epoch may be shorter and still steps, so every epoch ends on a step."""

from __future__ import annotations

import contextlib
import math
from typing import Any

__all__ = ["GradAccumulation", "accumulation_steps"]


def accumulation_steps(batches: int, k: int) -> int:
    """Optimizer steps per epoch of ``batches`` batches."""
    return math.ceil(batches / k)


class GradAccumulation:
    """Marks micro-batches as ``state.accumulating`` so the loop skips their step. Under DDP
    (``state.extra["ddp"]``) all but the last micro-batch of a group run in ``no_sync()``:
    their gradients add up locally and the last backward all-reduces the sum once (the same
    mean, k times fewer all-reduces)."""

    order = -20  # scale the loss before fp16 scaling

    def __init__(self, k: int) -> None:
        self.k = k
        self._no_sync: contextlib.AbstractContextManager[Any] | None = None

    def _group_size(self, state: Any) -> int:
        n = state.steps_per_epoch
        start = (state.batch_in_epoch - 1) // self.k * self.k
        return min(self.k, n - start)

    def _closes_group(self, state: Any) -> bool:
        b = state.batch_in_epoch
        return b % self.k == 0 or b >= state.steps_per_epoch

    def on_batch_start(self, state: Any) -> None:
        ddp = state.extra.get("ddp")
        # DDP reads the flag in forward and acts in backward: on from here to after backward
        if ddp is not None and not self._closes_group(state):
            self._no_sync = ddp.no_sync()
            self._no_sync.__enter__()

    def on_before_backward(self, state: Any) -> None:
        state.backward_loss = state.backward_loss / self._group_size(state)

    def on_after_backward(self, state: Any) -> None:
        self._leave_no_sync()
        state.accumulating = not self._closes_group(state)

    def on_close(self, state: Any) -> None:
        self._leave_no_sync()  # a failed batch must not leave DDP unsynchronised

    def _leave_no_sync(self) -> None:
        if self._no_sync is not None:
            self._no_sync.__exit__(None, None, None)
            self._no_sync = None
