"""L1 penalty on the weights: ``loss += coef * sum(|w|)`` (sparsifying regularization)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["L1Penalty", "l1_penalty"]


def l1_penalty(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of absolute values of ``params`` (one fused norm per tensor)."""
    return torch.stack(torch._foreach_norm(list(params), 1)).sum()


class L1Penalty:
    """Adds the penalty after the loss, over weights with >= 2 dims (not norms/biases,
    like weight decay)."""

    def __init__(self, coef: float) -> None:
        self.coef = coef
        self.params: list[torch.Tensor] = []

    def on_fit_start(self, state: Any) -> None:
        self.params = [p for p in state.module.parameters() if p.ndim >= 2]

    def on_after_loss(self, state: Any) -> None:
        trainable = [p for p in self.params if p.requires_grad]
        if trainable:
            state.loss = state.loss + self.coef * l1_penalty(trainable)
