"""CutMix (Yun et al. 2019): paste a random box from the reversed batch into each image.

The box covers ``1 - lam`` of the image for ``lam ~ Beta(alpha, alpha)``; ``lam`` is then
corrected to the exact pasted area and the loss mixed as in mixup. Needs ``(N, C, H, W)``
inputs.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch

from dlopt.train.techniques.mixup import _MixBase

__all__ = ["CutMix", "cutmix_batch", "cutmix_box"]


def cutmix_box(h: int, w: int, lam: float, rng: random.Random) -> tuple[int, int, int, int]:
    """``(y1, y2, x1, x2)`` of a box of area ~ ``(1 - lam) * h * w`` centred at random."""
    ratio = math.sqrt(1.0 - lam)
    ch, cw = int(h * ratio), int(w * ratio)
    cy, cx = rng.randrange(h), rng.randrange(w)
    return (max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w))


def cutmix_batch(x: torch.Tensor, y: torch.Tensor, box: tuple[int, int, int, int]
                 ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The batch with ``box`` pasted from ``x.flip(0)``, the second targets, and the kept
    fraction ``lam`` (the input tensor is not modified)."""
    y1, y2, x1, x2 = box
    out = x.clone()
    out[:, :, y1:y2, x1:x2] = x.flip(0)[:, :, y1:y2, x1:x2]
    lam = 1.0 - (y2 - y1) * (x2 - x1) / (x.shape[-2] * x.shape[-1])
    return out, y.flip(0), lam


class CutMix(_MixBase):
    """Cuts and pastes in every training batch."""

    def on_batch_start(self, state: Any) -> None:
        lam = self.rng.betavariate(self.alpha, self.alpha)
        box = cutmix_box(int(state.x.shape[-2]), int(state.x.shape[-1]), lam, self.rng)
        state.x, self.y_b, self.lam = cutmix_batch(state.x, state.y, box)
