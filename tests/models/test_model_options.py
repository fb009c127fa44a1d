"""Every value of activation / norm / init / pool, and the width/depth/dropout knobs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlopt.models import arch_options, create_model, summary
from dlopt.models.attention import CrossAttention, MultiHeadSelfAttention
from dlopt.models.layers import ACTIVATIONS, INITS, NORMS, POOLS

_ACT_TYPES = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "selu": nn.SELU,
    "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}


def _types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


def _forward_ok(model: nn.Module, shape: tuple[int, ...]) -> None:
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 3) and torch.isfinite(out).all()


def test_activation_table_matches_registry():
    assert set(_ACT_TYPES) == set(ACTIVATIONS.names())


@pytest.mark.parametrize("act", ACTIVATIONS.names())
@pytest.mark.parametrize(("name", "shape"), [("lenet5", (1, 28, 28)), ("vit", (1, 16, 16))])
def test_activation(name, shape, act):
    model = create_model(name, input_shape=shape, num_classes=3, activation=act)
    assert _ACT_TYPES[act] in _types(model)
    others = {t for a, t in _ACT_TYPES.items() if a != act}
    assert not others & _types(model)
    _forward_ok(model, shape)


# norm value -> layer types expected per model family
_NORM_TYPES = {
    "batchnorm": (nn.BatchNorm1d, nn.BatchNorm2d),
    "layernorm": (nn.LayerNorm, nn.GroupNorm),
}


@pytest.mark.parametrize("norm", NORMS.names())
@pytest.mark.parametrize(
    ("name", "shape"),
    [("convnet", (1, 28, 28)), ("mlp", (20,)), ("vit", (1, 16, 16)), ("cnn1d", (40,)),
     ("resnet", (3, 16, 16)), ("gru", (40,))],
)
def test_norm(name, shape, norm):
    model = create_model(name, input_shape=shape, num_classes=3, norm=norm)
    found = {t for t in _types(model) if issubclass(t, (nn.modules.batchnorm._BatchNorm,
                                                        nn.LayerNorm, nn.GroupNorm))}
    expected = _NORM_TYPES.get(norm, ())
    assert found and all(issubclass(t, expected) for t in found) if expected else not found
    model.train()
    _forward_ok(model, shape)


@pytest.mark.parametrize("pool", POOLS.names())
@pytest.mark.parametrize(("name", "shape"), [("lenet5", (1, 28, 28)), ("cnn1d", (40,)),
                                             ("msresnet", (1, 16, 16))])
def test_pool(name, shape, pool):
    model = create_model(name, input_shape=shape, num_classes=3, pool=pool)
    kinds = {"max": (nn.MaxPool1d, nn.MaxPool2d), "avg": (nn.AvgPool1d, nn.AvgPool2d)}
    pools = [m for m in model.modules() if isinstance(m, (*kinds["max"], *kinds["avg"]))]
    assert pools and all(isinstance(m, kinds[pool]) for m in pools)
    _forward_ok(model, shape)


def _std(fan_in: int, fan_out: int) -> dict[str, float]:
    """Expected weight std of each init for a Linear(fan_in, fan_out)."""
    return {
        "xavier_uniform": math.sqrt(2 / (fan_in + fan_out)),
        "xavier_normal": math.sqrt(2 / (fan_in + fan_out)),
        "kaiming": math.sqrt(2 / fan_in),
        "he": math.sqrt(2 / fan_in),
        "lecun": math.sqrt(1 / fan_in),
        "normal": 0.02,
        "orthogonal": math.sqrt(1 / fan_in),  # rows orthonormal: each row has norm 1
        "default": 1 / math.sqrt(3 * fan_in),  # torch: uniform(+-1/sqrt(fan_in))
    }


def test_init_table_matches_registry():
    assert set(_std(1, 1)) == set(INITS.names())


@pytest.mark.parametrize("init", INITS.names())
def test_init(init):
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=(784,), num_classes=3, width=256, depth=1,
                         init=init)
    layer = next(m for m in model.modules() if isinstance(m, nn.Linear))
    w = layer.weight.detach()
    assert w.std().item() == pytest.approx(_std(784, 256)[init], rel=0.05)
    if init == "orthogonal":
        torch.testing.assert_close(w @ w.T, torch.eye(256), atol=1e-4, rtol=0)
    if init != "default":
        assert torch.count_nonzero(layer.bias) == 0
    _forward_ok(model, (784,))


@pytest.mark.parametrize("init", ["orthogonal", "xavier_uniform"])
def test_init_reaches_conv_and_recurrent_weights(init):
    torch.manual_seed(0)
    lstm = create_model("lstm", input_shape=(40,), num_classes=3, init=init)
    w_hh = lstm.rnn.weight_hh_l0.detach()  # (4H, H): orthogonal columns
    if init == "orthogonal":
        torch.testing.assert_close(w_hh.T @ w_hh, torch.eye(w_hh.shape[1]), atol=1e-4, rtol=0)
    else:
        bound = math.sqrt(6 / sum(w_hh.shape))
        assert w_hh.abs().max() <= bound and w_hh.abs().max() > 0.9 * bound
    conv = create_model("lenet5", input_shape=(1, 28, 28), num_classes=3, init=init)
    first = conv.features[0][0].weight.detach()  # (6, 1, 3, 3): fan_in 9
    if init == "orthogonal":
        flat = first.flatten(1)
        torch.testing.assert_close(flat @ flat.T, torch.eye(6), atol=1e-4, rtol=0)


def test_dropout_option():
    model = create_model("convnet", input_shape=(1, 28, 28), num_classes=3, dropout=0.5)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(m.p == 0.5 for m in drops)
    x = torch.rand(8, 1, 28, 28)
    model.train()
    torch.manual_seed(0)
    assert not torch.allclose(model(x), model(x))  # dropout active in training
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    none = create_model("convnet", input_shape=(1, 28, 28), num_classes=3, dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in none.modules())


def test_width_multiplier_scales_lenet():
    base = create_model("lenet5", input_shape=(1, 28, 28), num_classes=10)
    wide = create_model("lenet5", input_shape=(1, 28, 28), num_classes=10, width=2.0)
    assert arch_options(wide) == {"channels": [12, 32], "hidden": [240, 168]}
    assert summary(wide, (1, 28, 28)).macs > 3 * summary(base, (1, 28, 28)).macs


@pytest.mark.parametrize(("depth", "blocks"), [(8, 3), (14, 6), (20, 9)])
def test_resnet_depth(depth, blocks):
    from dlopt.models.resnet import BasicBlock

    model = create_model("resnet", input_shape=(3, 16, 16), num_classes=10, depth=depth)
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == blocks
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == depth - 1  # + the linear head = depth weighted layers
    assert [c.out_channels for c in convs][-1] == 64


def test_mlp_depth_and_hidden():
    model = create_model("mlp", input_shape=(10,), num_classes=2, depth=3, width=32)
    assert arch_options(model) == {"hidden": [32, 32, 32]}
    model = create_model("mlp", input_shape=(10,), num_classes=2, hidden=[64, 8])
    assert arch_options(model) == {"hidden": [64, 8]}


def test_msresnet_attention_fuse_uses_cross_attention():
    concat = create_model("msresnet", input_shape=(1, 16, 16), num_classes=3)
    attn = create_model("msresnet", input_shape=(1, 16, 16), num_classes=3, fuse="attention")
    assert CrossAttention not in _types(concat) and CrossAttention in _types(attn)
    assert len(attn.branches) == 3
    assert summary(attn, (1, 16, 16)).macs > summary(concat, (1, 16, 16)).macs


def test_vit_uses_self_attention_and_auto_patch():
    model = create_model("vit", input_shape=(1, 28, 28), num_classes=3, depth=2)
    assert sum(isinstance(m, MultiHeadSelfAttention) for m in model.modules()) == 2
    assert model.patch_embed.kernel_size == (7, 7)  # 28x28 -> 4x4 patches
    assert model.pos_embed.shape == (1, 16, 64)


def test_recurrent_bidirectional_and_depth():
    model = create_model("gru", input_shape=(1, 28, 28), num_classes=3, width=16,
                         bidirectional=True, depth=2)
    assert model.rnn.input_size == 28 and model.rnn.num_layers == 2
    assert model.head[-1].in_features == 32
    _forward_ok(model, (1, 28, 28))
