"""Optional TensorBoard logging of the epoch rows (``<run>/tensorboard/``).

Needs the ``tensorboard`` package (``pip install -c constraints.txt tensorboard``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.errors import ConfigError

__all__ = ["TensorBoard"]


class TensorBoard:
    """Scalars per epoch, x axis = optimizer step. A resumed run hides the points an earlier
    session wrote past the state it continues from (the early close of an epoch that
    ``max_steps`` cut, an epoch logged before a crash), so every epoch keeps one point."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "train.tensorboard=true needs the tensorboard package; "
                "pip install -c constraints.txt tensorboard, or set train.tensorboard=false"
            ) from None
        self._make_writer = SummaryWriter
        self.log_dir = Path(log_dir)
        self.writer: Any = None

    def on_epoch_start(self, state: Any) -> None:
        # opened here, not at fit start: only now has a resume restored the step it continues from
        if self.writer is None:
            purge = _purge_step(state.step, state.batch_in_epoch)
            self.writer = self._make_writer(str(self.log_dir), purge_step=purge)

    def on_epoch_end(self, state: Any) -> None:
        for k, v in state.history[-1].items():
            if k not in ("epoch", "step") and isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, state.step)
        self.writer.flush()

    def on_close(self, state: Any) -> None:
        if self.writer is not None:
            self.writer.close()


def _purge_step(step: int, batch_in_epoch: int) -> int | None:
    """TensorBoard hides the earlier sessions' points from this step on, when a run goes on
    from ``step`` (None: a fresh run). Inside an epoch, a point at ``step`` is an early close
    the resume undoes; at an epoch's end, the point at ``step`` is that epoch's and stays."""
    if step == 0:
        return None
    return step if batch_in_epoch else step + 1
