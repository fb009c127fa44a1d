"""Frozen BatchNorm layers run in eval mode: their running statistics stay as loaded."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dlopt.train import fit


class _Net(nn.Module):
    def __init__(self, *, affine: bool = True) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16, affine=affine), nn.ReLU())
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


def _fit(tmp_path, *, affine: bool = True, **transfer: Any) -> tuple[_Net, dict[str, torch.Tensor], _NormModes]:
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=(96, 8)).astype(np.float32)  # far from BatchNorm's initial statistics
    y = rng.integers(0, 3, size=96)
    torch.manual_seed(0)
    net, modes = _Net(affine=affine), _NormModes()
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    fit(net, (x, y), epochs=2, batch_size=32, run_dir=tmp_path / "r", progress=False, callbacks=[modes],
        transfer=transfer)
    return net, before, modes


# a BatchNorm without affine parameters has no names to freeze: it kept training mode
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("transfer", [{"freeze": ["backbone.*"]}, {"freeze_until": "head"}])
def test_frozen_batchnorm_keeps_its_statistics_every_epoch(tmp_path, transfer: dict[str, Any], affine: bool) -> None:
    net, before, modes = _fit(tmp_path, affine=affine, **transfer)
    after = net.backbone.state_dict()
    for k, v in before.items():  # running_mean/var and num_batches_tracked as well as the weights
        assert torch.equal(v, after[k]), k
    assert modes.seen == {0: {False}, 1: {False}}  # the epoch's evaluation does not leave it training
    assert modes.tracked == [0, 0]


@pytest.mark.parametrize("affine", [True, False])
def test_unfrozen_batchnorm_trains_again(tmp_path, affine: bool) -> None:
    _, _, modes = _fit(tmp_path, affine=affine, freeze=["backbone.*"], unfreeze_at_epoch=1)
    assert modes.seen == {0: {False}, 1: {True}}
    assert modes.tracked == [0, modes.steps_per_epoch]  # the second epoch's batches only


def test_a_batchnorm_outside_the_frozen_part_trains(tmp_path) -> None:
    # the stand-in names of an affine-less BatchNorm follow the same rule: a glob that misses them
    _, _, modes = _fit(tmp_path, affine=False, freeze=["backbone.0.*"])
    assert modes.seen == {0: {True}, 1: {True}}


def test_an_input_batchnorm_before_freeze_until_is_frozen(tmp_path) -> None:
    # no parameter comes before layer "1": nothing was frozen, so the BatchNorm kept training
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm1d(8, affine=False), nn.Linear(8, 3))
    x = np.random.default_rng(0).normal(1.0, 2.0, size=(96, 8)).astype(np.float32)
    fit(net, (x, np.arange(96) % 3), epochs=1, batch_size=32, run_dir=tmp_path / "r", progress=False,
        transfer={"freeze_until": "1"})
    assert int(net[0].num_batches_tracked) == 0 and torch.equal(net[0].running_mean, torch.zeros(8))


def test_a_glob_naming_only_a_batchnorm_without_parameters_freezes_it(tmp_path) -> None:
    # docs/training.md: such a BatchNorm stands in with weight and bias; the glob was refused
    # ("matches no parameter") as it was checked against the parameters alone
    _, _, modes = _fit(tmp_path, affine=False, freeze=["backbone.1.*"])
    assert modes.seen == {0: {False}, 1: {False}} and modes.tracked == [0, 0]


def test_unfreeze_matches_the_frozen_names_exactly() -> None:
    # the frozen names were also read as globs: "bn[0].weight" matches "bn0.weight", never itself
    from types import SimpleNamespace

    from dlopt.train.techniques import Unfreeze, frozen_names

    net = nn.ModuleDict({"bn[0]": nn.BatchNorm1d(4), "head": nn.Linear(4, 2)})
    names = frozen_names(net, ["bn?0?.*"])
    assert names == ["bn[0].weight", "bn[0].bias"]
    unfreeze = Unfreeze(names)  # names alone, as the Python API may pass them
    unfreeze.on_fit_start(SimpleNamespace(module=net))
    net.train()
    unfreeze.on_epoch_start(SimpleNamespace(module=net, epoch=0))
    assert not net["bn[0]"].training and net["head"].training
