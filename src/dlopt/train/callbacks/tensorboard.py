"""Optional TensorBoard logging of the epoch rows (``<run>/tensorboard/``).

Needs the ``tensorboard`` package (``pip install -c constraints.txt tensorboard``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.errors import ConfigError

__all__ = ["TensorBoard"]


class TensorBoard:
    """Scalars per epoch, x axis = optimizer step."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "train.tensorboard=true needs the tensorboard package; "
                "pip install -c constraints.txt tensorboard, or set train.tensorboard=false"
            ) from None
        self.writer = SummaryWriter(str(log_dir))

    def on_epoch_end(self, state: Any) -> None:
        for k, v in state.history[-1].items():
            if k not in ("epoch", "step") and isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, state.step)
        self.writer.flush()

    def on_close(self, state: Any) -> None:
        self.writer.close()
