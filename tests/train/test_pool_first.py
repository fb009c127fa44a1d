"""Pool-before-activation: an exact rewrite (values and gradients bitwise), undone after the fit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dlopt.models import create_model
from dlopt.train import train_run
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
    on = train_run(tiny_config(pool_first=True), run_dir=tmp_path / "on", callbacks=[seen_on])
    off = train_run(tiny_config(pool_first=False), run_dir=tmp_path / "off", callbacks=[seen_off])
    assert set(seen_on.moved) == {2} and set(seen_off.moved) == {0}
    assert_same_weights(weights(on.run_dir), weights(off.run_dir))
    assert on.summary["test"] == off.summary["test"]
    # the trained model comes back in its original layer order (Conv+ReLU stay fusable on export)
    assert not any(isinstance(m, _PoolThenAct) for m in on.model.modules())
    assert isinstance(on.model.features[0][1], nn.ReLU)
