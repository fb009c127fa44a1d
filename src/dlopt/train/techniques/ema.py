"""Exponential moving average of the weights (and buffers), used for evaluation and export.

Built on ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn`` (one fused
``lerp`` per step). While on, ``state.eval_model`` is the averaged copy: validation, the best
checkpoint's metric and the exported ``model.safetensors`` all use the EMA weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["EMA", "ema_model"]


def ema_model(module: nn.Module, decay: float) -> AveragedModel:
    """An EMA shadow of ``module`` (parameters and buffers); call ``update_parameters``."""
    return AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


class EMA:
    """Updates the shadow after every optimizer step."""

    order = 30  # after channels_last / compile changed the module
    state_key = "ema"

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.averaged: AveragedModel | None = None

    def on_fit_start(self, state: Any) -> None:
        self.averaged = ema_model(state.module, self.decay)
        state.eval_model = self.averaged.module

    def on_after_optimizer_step(self, state: Any) -> None:
        self.averaged.update_parameters(state.module)

    # restored by the checkpoint handler at the end of FIT_START, after the shadow exists
    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.averaged.state_dict())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.averaged.load_state_dict(state)
