"""Frozen BatchNorm layers run in eval mode: their running statistics stay as loaded."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dlopt.train import fit


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class _NormModes:
    """The backbone BatchNorm's training flag at each batch and its batch count at each epoch
    end (the returned model holds the best epoch's weights, not the last)."""

    def __init__(self) -> None:
        self.seen: dict[int, set[bool]] = {}
        self.tracked: list[int] = []
        self.steps_per_epoch = 0

    def on_batch_start(self, state: Any) -> None:
        self.seen.setdefault(state.epoch, set()).add(state.module.backbone[1].training)

    def on_epoch_end(self, state: Any) -> None:
        self.tracked.append(int(state.module.backbone[1].num_batches_tracked))
        self.steps_per_epoch = state.steps_per_epoch


def _fit(tmp_path, **transfer: Any) -> tuple[_Net, dict[str, torch.Tensor], _NormModes]:
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=(96, 8)).astype(np.float32)  # far from BatchNorm's initial statistics
    y = rng.integers(0, 3, size=96)
    torch.manual_seed(0)
    net, modes = _Net(), _NormModes()
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    fit(net, (x, y), epochs=2, batch_size=32, run_dir=tmp_path / "r", progress=False, callbacks=[modes],
        transfer=transfer)
    return net, before, modes


@pytest.mark.parametrize("transfer", [{"freeze": ["backbone.*"]}, {"freeze_until": "head"}])
def test_frozen_batchnorm_keeps_its_statistics_every_epoch(tmp_path, transfer: dict[str, Any]) -> None:
    net, before, modes = _fit(tmp_path, **transfer)
    after = net.backbone.state_dict()
    for k, v in before.items():  # running_mean/var and num_batches_tracked as well as the weights
        assert torch.equal(v, after[k]), k
    assert modes.seen == {0: {False}, 1: {False}}  # the epoch's evaluation does not leave it training
    assert modes.tracked == [0, 0]


def test_unfrozen_batchnorm_trains_again(tmp_path) -> None:
    _, _, modes = _fit(tmp_path, freeze=["backbone.*"], unfreeze_at_epoch=1)
    assert modes.seen == {0: {False}, 1: {True}}
    assert modes.tracked == [0, modes.steps_per_epoch]  # the second epoch's batches only
