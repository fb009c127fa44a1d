"""Gradient clipping by value and/or by global norm, before the optimizer step."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["GradClip", "clip_gradients"]


def clip_gradients(params: list[torch.Tensor], *, max_norm: float | None = None,
                   max_value: float | None = None) -> torch.Tensor | None:
    """Clip in place; returns the total norm before norm clipping (a device tensor, not
    synced) or None when only value clipping is on."""
    if max_value is not None:
        torch.nn.utils.clip_grad_value_(params, max_value, foreach=True)
    if max_norm is not None:
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    return None


class GradClip:
    """Clips after fp16 unscaling; leaves the pre-clip norm in ``state.grad_norm``."""

    order = -5

    def __init__(self, *, max_norm: float | None = None, max_value: float | None = None) -> None:
        self.max_norm, self.max_value = max_norm, max_value
        self.params: list[torch.Tensor] = []

    def on_fit_start(self, state: Any) -> None:
        self.params = list(state.module.parameters())

    def on_before_optimizer_step(self, state: Any) -> None:
        grads = [p for p in self.params if p.grad is not None]
        if grads:
            state.grad_norm = clip_gradients(grads, max_norm=self.max_norm, max_value=self.max_value)
