"""Batched data augmentation (``dlopt.data.build_augment``) on the training device."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["Augmentation"]


class Augmentation:
    """Applies ``augment`` to each training batch; never to evaluation batches."""

    order = -30  # before mixup/cutmix and channels_last

    def __init__(self, augment: nn.Module) -> None:
        self.augment = augment

    def on_fit_start(self, state: Any) -> None:
        self.augment.to(state.device).train()

    def on_batch_start(self, state: Any) -> None:
        state.x = self.augment(state.x)
