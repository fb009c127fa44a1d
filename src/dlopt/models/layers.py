"""Building blocks shared by the zoo: activation, normalization, pooling and init registries.

Each registry maps an option value (``activation="gelu"``, ``norm="layernorm"``,
``pool="avg"``, ``init="kaiming"``) to a small factory, so adding a choice is one
decorator here and every model and the option checker pick it up.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import nn

from dlopt.errors import ModelError
from dlopt.registry import Registry

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "POOLS",
    "INITS",
    "NormKind",
    "make_activation",
    "make_norm",
    "make_pool",
    "init_weights",
    "conv_block",
    "drop_identity",
    "infer_shape",
    "image_input",
    "signal_input",
    "scaled",
    "conv_widths",
    "check_widths",
]

#: Where a norm layer sits: ``features`` (N, C), ``conv1d`` (N, C, L), ``conv2d`` (N, C, H, W),
#: ``tokens`` (N, T, C).
NormKind = Literal["features", "conv1d", "conv2d", "tokens"]

ACTIVATIONS: Registry[nn.Module] = Registry("activation", ModelError)
NORMS: Registry[nn.Module] = Registry("norm", ModelError)
POOLS: Registry[nn.Module] = Registry("pool", ModelError)
INITS: Registry[None] = Registry("init", ModelError)


# ------------------------------------------------------------------------------ activations
@ACTIVATIONS.register("relu")
def _relu() -> nn.Module:
    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu")
def _leaky_relu() -> nn.Module:
    return nn.LeakyReLU(0.01)


@ACTIVATIONS.register("elu")
def _elu() -> nn.Module:
    return nn.ELU()


@ACTIVATIONS.register("selu")
def _selu() -> nn.Module:
    return nn.SELU()


@ACTIVATIONS.register("gelu")
def _gelu() -> nn.Module:
    # tanh approximation: cheaper on CPU and exports to plain ONNX ops
    return nn.GELU(approximate="tanh")


@ACTIVATIONS.register("tanh")
def _tanh() -> nn.Module:
    return nn.Tanh()


@ACTIVATIONS.register("sigmoid")
def _sigmoid() -> nn.Module:
    return nn.Sigmoid()


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for option value ``name``."""
    return ACTIVATIONS.create(name)


# ------------------------------------------------------------------------------------ norms
class _TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the channel dim of (N, T, C) tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


@NORMS.register("batchnorm")
def _batchnorm(num_features: int, kind: NormKind) -> nn.Module:
    if kind == "conv2d":
        return nn.BatchNorm2d(num_features)
    if kind == "tokens":
        return _TokenBatchNorm(num_features)
    return nn.BatchNorm1d(num_features)


@NORMS.register("layernorm")
def _layernorm(num_features: int, kind: NormKind) -> nn.Module:
    if kind in ("conv1d", "conv2d"):
        # one group = layer norm over (C, *spatial); keeps NCHW/channels_last, exports plainly
        return nn.GroupNorm(1, num_features)
    return nn.LayerNorm(num_features)


@NORMS.register("none")
def _no_norm(num_features: int, kind: NormKind) -> nn.Module:
    return nn.Identity()


def make_norm(name: str, num_features: int, kind: NormKind) -> nn.Module:
    """Norm layer ``name`` for ``num_features`` channels placed as ``kind``."""
    return NORMS.create(name, num_features=num_features, kind=kind)


# ------------------------------------------------------------------------------------ pools
@POOLS.register("max")
def _max_pool(dims: int, kernel: int) -> nn.Module:
    return nn.MaxPool1d(kernel) if dims == 1 else nn.MaxPool2d(kernel)


@POOLS.register("avg")
def _avg_pool(dims: int, kernel: int) -> nn.Module:
    return nn.AvgPool1d(kernel) if dims == 1 else nn.AvgPool2d(kernel)


def make_pool(name: str, dims: int, kernel: int = 2) -> nn.Module:
    """Pooling layer ``name`` over ``dims`` (1 or 2) spatial dims."""
    return POOLS.create(name, dims=dims, kernel=kernel)


# ------------------------------------------------------------------------------------ inits
def _lecun_normal(w: torch.Tensor) -> None:
    fan_in = nn.init._calculate_correct_fan(w, "fan_in")
    nn.init.normal_(w, 0.0, 1.0 / math.sqrt(fan_in))


_SCHEMES: dict[str, Callable[[torch.Tensor], object]] = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming": lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"),
    "lecun": _lecun_normal,
    "normal": lambda w: nn.init.normal_(w, 0.0, 0.02),
    "orthogonal": nn.init.orthogonal_,
}
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.RNNBase)


def _scheme_init(scheme: str) -> Callable[[nn.Module], None]:
    def apply(model: nn.Module) -> None:
        fn = _SCHEMES[scheme]
        for module in model.modules():
            if not isinstance(module, _WEIGHTED):
                continue
            for pname, p in module.named_parameters(recurse=False):
                if pname.startswith("weight") and p.dim() >= 2:
                    fn(p.data)
                elif pname.startswith("bias"):
                    nn.init.zeros_(p.data)

    return apply


for _name in _SCHEMES:
    INITS.register(_name)(_scheme_init(_name))
# "he" is the other common name of kaiming init
INITS.register("he")(_scheme_init("kaiming"))


@INITS.register("default")
def _default_init(model: nn.Module) -> None:
    """Keep PyTorch's per-layer defaults."""


def init_weights(model: nn.Module, name: str) -> None:
    """Re-initialise the weights of every Linear/Conv/RNN layer of ``model`` with ``name``.

    Norm layers keep weight 1 / bias 0; biases of weighted layers become 0.
    """
    INITS.get(name).factory(model)


# ---------------------------------------------------------------------------------- helpers
def conv_block(
    in_ch: int,
    out_ch: int,
    *,
    dims: int,
    kernel: int,
    activation: str,
    norm: str,
    stride: int = 1,
    padding: int | None = None,
) -> nn.Sequential:
    """conv -> norm -> activation; the conv has no bias when a norm follows it."""
    conv_cls = nn.Conv1d if dims == 1 else nn.Conv2d
    pad = kernel // 2 if padding is None else padding
    conv = conv_cls(in_ch, out_ch, kernel, stride=stride, padding=pad, bias=norm == "none")
    kind: NormKind = "conv1d" if dims == 1 else "conv2d"
    norm_layer = make_norm(norm, out_ch, kind)
    return nn.Sequential(*drop_identity(conv, norm_layer, make_activation(activation)))


def drop_identity(*modules: nn.Module) -> list[nn.Module]:
    """``modules`` without ``nn.Identity`` placeholders (e.g. ``norm="none"``): leaner forward."""
    return [m for m in modules if not isinstance(m, nn.Identity)]


def infer_shape(module: nn.Module, input_shape: tuple[int, ...], *, model: str) -> tuple[int, ...]:
    """Output shape (without batch) of ``module`` for one input of ``input_shape``.

    Runs one sample in eval mode (cheap for the zoo's feature stacks); an input too small
    for the layers becomes a one-line ModelError naming ``model``.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(
            f"model {model!r}: input_shape {tuple(input_shape)} does not fit its layers ({first})"
        ) from None
    finally:
        module.train(was_training)
    return tuple(out.shape[1:])


def image_input(
    input_shape: tuple[int, ...], *, model: str
) -> tuple[list[nn.Module], int, int, int]:
    """Adapt ``(C, H, W)`` or ``(H, W)`` inputs for a 2-D conv model.

    Returns the modules to put first (an Unflatten for ``(H, W)``) and ``(C, H, W)``.
    """
    if len(input_shape) == 3:
        return [], *input_shape  # type: ignore[return-value]
    if len(input_shape) == 2:
        h, w = input_shape
        return [nn.Unflatten(1, (1, h))], 1, h, w
    raise ModelError(
        f"model {model!r} needs image input_shape (C, H, W) or (H, W); got {tuple(input_shape)}"
    )


def signal_input(input_shape: tuple[int, ...], *, model: str) -> tuple[list[nn.Module], int, int]:
    """Adapt ``(C, L)`` or ``(L,)`` inputs for a 1-D conv model; returns modules and ``(C, L)``."""
    if len(input_shape) == 2:
        return [], *input_shape  # type: ignore[return-value]
    if len(input_shape) == 1:
        return [nn.Unflatten(1, (1, input_shape[0]))], 1, input_shape[0]
    raise ModelError(
        f"model {model!r} needs 1-D input_shape (C, L) or (L,); got {tuple(input_shape)}"
    )


def scaled(base: int, width: float) -> int:
    """``base`` channels times a width multiplier, at least 1."""
    return max(1, round(base * width))


def conv_widths(module: nn.Module) -> list[int]:
    """Output channels of every conv layer of ``module`` in registration order."""
    return [m.out_channels for m in module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]


def check_widths(model: str, option: str, widths: list[int] | None, expected: int) -> None:
    """A ``channels``/``hidden`` override must give one width per layer."""
    if widths is not None and len(widths) != expected:
        raise ModelError(
            f"model {model!r} option {option!r} has {len(widths)} widths; "
            f"allowed: exactly {expected}"
        )
