"""channels_last memory format for 4-D conv inputs (oneDNN convolutions run much closer to
peak in NHWC on this CPU: 92% vs 34% for a 64-channel conv, STACK-NOTES)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ChannelsLast", "to_channels_last"]


def to_channels_last(module: nn.Module) -> nn.Module:
    """``module`` with its 4-D weights in channels_last (in place)."""
    return module.to(memory_format=torch.channels_last)


class ChannelsLast:
    """Converts the model at fit start and each 4-D training batch as it arrives."""

    order = 10

    def on_fit_start(self, state: Any) -> None:
        to_channels_last(state.module)

    def on_batch_start(self, state: Any) -> None:
        if state.x.dim() == 4:
            state.x = state.x.contiguous(memory_format=torch.channels_last)
