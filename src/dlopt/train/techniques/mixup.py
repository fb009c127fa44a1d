"""Mixup (Zhang et al. 2018): train on convex mixes of sample pairs and their targets.

Each batch is mixed with itself reversed (``x.flip(0)``, as timm does: the loader already
shuffled it), with ``lam ~ Beta(alpha, alpha)`` drawn from the technique's own seeded RNG
(saved in checkpoints, so a resumed run draws the same values). The loss becomes
``lam * loss(out, y) + (1 - lam) * loss(out, y.flip(0))``, which works for every loss.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import torch

__all__ = ["Mixup", "mixup_batch", "mixed_loss"]


def mixup_batch(x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lam * x + (1 - lam) * x.flip(0), y.flip(0))``: the mixed inputs and second targets."""
    return x.mul(lam).add_(x.flip(0), alpha=1.0 - lam), y.flip(0)


def mixed_loss(loss: torch.Tensor, loss_fn: Callable[[Any, Any], torch.Tensor], outputs: torch.Tensor,
               y_b: torch.Tensor, lam: float) -> torch.Tensor:
    """Mix ``loss`` (against the first targets) with the loss against ``y_b``."""
    return lam * loss + (1.0 - lam) * loss_fn(outputs, y_b)


class _MixBase:
    """Shared by Mixup and CutMix: seeded ``lam`` draws, the mixed loss, resumable RNG."""

    order = -1  # mix the loss before penalties are added to it
    state_key = "mix"
    rank_stream = True  # under DDP each rank reseeds it (dlopt.train.distributed.RankRandomness)

    def __init__(self, alpha: float, *, seed: int = 0) -> None:
        self.alpha = alpha
        self.rng = random.Random(seed)
        self.lam = 1.0
        self.y_b: torch.Tensor | None = None

    def on_after_loss(self, state: Any) -> None:
        if self.y_b is not None:
            state.loss = mixed_loss(state.loss, state.loss_fn, state.outputs, self.y_b, self.lam)
            self.y_b = None

    def reseed(self, seed: int) -> None:
        """Restart the ``lam`` draws from ``seed``."""
        self.rng.seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


class Mixup(_MixBase):
    """Mixes every training batch."""

    def on_batch_start(self, state: Any) -> None:
        self.lam = self.rng.betavariate(self.alpha, self.alpha)
        state.x, self.y_b = mixup_batch(state.x, state.y, self.lam)
