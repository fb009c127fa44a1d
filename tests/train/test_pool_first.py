"""Pool-before-activation: an exact rewrite (values and gradients bitwise), undone after the fit."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from torch import nn

from dlopt.models import create_model
from dlopt.train import fit, train_run
from dlopt.train.techniques import pool_first, restore_pool_order
from dlopt.train.techniques.pool_first import _PoolThenAct

from train_helpers import assert_same_weights, tiny_config, weights


def _forward_and_grads(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    out = model(x)
    return [out, *torch.autograd.grad(out.square().sum(), list(model.parameters()))]


@pytest.mark.parametrize("name,shape,moves", [
    ("lenet5", (1, 28, 28), 2), ("convnet", (1, 28, 28), 2), ("cnn1d", (1, 40), 3),
    ("resnet", (1, 28, 28), 0),
])
def test_rewrite_is_exact_and_reversible(name: str, shape: tuple[int, ...], moves: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, input_shape=shape, num_classes=10).eval()
    reference = copy.deepcopy(model)
    keys = list(model.state_dict())
    x = torch.randn(16, *shape)

    assert pool_first(model) == moves
    assert list(model.state_dict()) == keys  # checkpoints and resume see the same tensors
    for a, b in zip(_forward_and_grads(model, x), _forward_and_grads(reference, x)):
        assert torch.equal(a, b)
    assert restore_pool_order(model) == moves
    assert repr(model) == repr(reference)


def test_non_monotone_hooked_or_negative_slope_activations_stay() -> None:
    def net(act: nn.Module) -> nn.Sequential:
        return nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3), act), nn.MaxPool2d(2), nn.Flatten())

    assert pool_first(net(nn.GELU())) == 0           # not monotone: pool(gelu) != gelu(pool)
    assert pool_first(net(nn.LeakyReLU(-0.5))) == 0  # decreasing on the negative side
    assert pool_first(net(nn.PReLU())) == 0          # learnable slope may turn negative
    assert pool_first(net(nn.ELU(alpha=-1.0))) == 0
    hooked = net(nn.ReLU())
    hooked[0].register_forward_hook(lambda *_: None)  # e.g. a distillation hint on the block
    assert pool_first(hooked) == 0
    assert pool_first(net(nn.Tanh())) == 1


class _SeesRewrite:
    def __init__(self) -> None:
        self.moved: list[int] = []

    def on_batch_start(self, state) -> None:
        self.moved.append(sum(isinstance(m, _PoolThenAct) for m in state.module.modules()))


def test_training_with_and_without_the_rewrite_is_bitwise_equal(tmp_path) -> None:
    seen_on, seen_off = _SeesRewrite(), _SeesRewrite()
    on = train_run(tiny_config(), run_dir=tmp_path / "on", callbacks=[seen_on])  # on by default for the zoo
    off = train_run(tiny_config(pool_first=False), run_dir=tmp_path / "off", callbacks=[seen_off])
    assert set(seen_on.moved) == {2} and set(seen_off.moved) == {0}
    assert_same_weights(weights(on.run_dir), weights(off.run_dir))
    assert on.summary["test"] == off.summary["test"]
    # the trained model comes back in its original layer order (Conv+ReLU stay fusable on export)
    assert not any(isinstance(m, _PoolThenAct) for m in on.model.modules())
    assert isinstance(on.model.features[0][1], nn.ReLU)


class _SkipNet(nn.Module):
    """Iterates its Sequential and keeps the map after the first ReLU as a skip (U-Net style):
    moving that ReLU behind the pool would hand the skip pre-activation values."""

    def __init__(self, *, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = None
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == 1 and self.skip:
                kept = x
        return self.head(torch.cat([x.mean((2, 3)), (x if kept is None else kept).amin((2, 3))], 1))


def _fit_custom(tmp_path, name: str, *, skip: bool, **recipe) -> tuple[list[int], dict[str, torch.Tensor]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean((1, 2)) > 0).astype(np.int64)
    torch.manual_seed(0)
    seen = _SeesRewrite()
    fit(_SkipNet(skip=skip), (x, y), epochs=1, batch_size=32, run_dir=tmp_path / name, progress=False,
        deterministic=True, callbacks=[seen], **recipe)
    return seen.moved, weights(tmp_path / name)


def test_a_custom_model_is_not_rewritten_by_default(tmp_path) -> None:
    moved, _ = _fit_custom(tmp_path, "default", skip=False)
    assert set(moved) == {0}


def test_an_opted_in_rewrite_that_changes_the_output_is_undone(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="dlopt.train.techniques.pool_first"):
        moved, on = _fit_custom(tmp_path, "on", skip=True, pool_first=True)
    assert set(moved) == {0}
    assert "changes what _SkipNet computes" in caplog.text
    assert_same_weights(on, _fit_custom(tmp_path, "off", skip=True, pool_first=False)[1])


def test_an_opted_in_rewrite_that_keeps_the_output_is_applied(tmp_path) -> None:
    moved, on = _fit_custom(tmp_path, "on", skip=False, pool_first=True)
    assert set(moved) == {1}
    assert_same_weights(on, _fit_custom(tmp_path, "off", skip=False, pool_first=False)[1])
