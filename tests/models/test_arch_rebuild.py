"""Pruned models round-trip through their width options (arch.json) and safetensors."""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from safetensors.torch import load_file, save_file
from torch import nn

from dlopt.models import arch_options, create_model, summary


def test_channels_and_hidden_override_build_a_narrower_lenet():
    narrow = create_model("lenet5", input_shape=(1, 28, 28), num_classes=10,
                          channels=[4, 10], hidden=[60, 30])
    assert arch_options(narrow) == {"channels": [4, 10], "hidden": [60, 30]}
    assert summary(narrow, (1, 28, 28)).params < summary(
        create_model("lenet5", input_shape=(1, 28, 28), num_classes=10), (1, 28, 28)).params
    twin = create_model("lenet5", input_shape=(1, 28, 28), num_classes=10,
                        **arch_options(narrow))
    twin.load_state_dict(narrow.state_dict())  # strict: same layers, same shapes


def _prune(model: nn.Module, shape: tuple[int, ...]) -> None:
    """Halve the channels with torch-pruning (real structured pruning, not a mock)."""
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    pruner = tp.pruner.BasePruner(
        model, torch.randn(2, *shape), importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.5, ignored_layers=[head],
    )
    pruner.step()


@pytest.mark.parametrize(
    ("name", "shape", "options"),
    [
        ("lenet5", (1, 28, 28), {}),
        ("mlp", (1, 28, 28), {"norm": "batchnorm"}),
        ("convnet", (1, 28, 28), {}),
        ("resnet", (1, 28, 28), {}),
        ("msresnet", (1, 16, 16), {"depth": 1}),
        ("cnn1d", (40,), {"norm": "layernorm"}),
    ],
)
def test_pruned_model_rebuilds_from_arch_options(tmp_path, name, shape, options):
    torch.manual_seed(0)
    model = create_model(name, input_shape=shape, num_classes=10, **options)
    before = summary(model, shape)
    _prune(model.eval(), shape)
    arch = arch_options(model)
    assert summary(model, shape).macs < 0.5 * before.macs

    save_file(model.state_dict(), tmp_path / "model.safetensors")
    rebuilt = create_model(name, input_shape=shape, num_classes=10, **options, **arch).eval()
    rebuilt.load_state_dict(load_file(tmp_path / "model.safetensors"))
    x = torch.randn(3, *shape)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    assert summary(rebuilt, shape) == summary(model, shape)


def test_default_model_arch_options_reproduce_it():
    model = create_model("resnet", input_shape=(3, 16, 16), num_classes=4, depth=14)
    arch = arch_options(model)
    assert len(arch["channels"]) == 1 + 2 * 6
    same = create_model("resnet", input_shape=(3, 16, 16), num_classes=4, depth=14, **arch)
    assert [tuple(p.shape) for p in same.parameters()] == [
        tuple(p.shape) for p in model.parameters()]


def test_user_module_has_no_arch_options():
    assert arch_options(nn.Linear(2, 2)) == {}
