"""``mlp``: a multilayer perceptron that flattens any input."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from dlopt.models._registry import positive_int, register_model
from dlopt.models.layers import drop_identity, init_weights, make_activation, make_norm

__all__ = ["MLP", "mlp"]


def _hidden_layers(v: object) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
    return None if ok else "an integer >= 0 (0: a linear model)"


# width counts units here, not a multiplier; depth 0 is logistic/linear regression
_CHECKS = {"width": positive_int, "depth": _hidden_layers}


class MLP(nn.Sequential):
    """Flatten -> [Linear -> norm -> activation -> dropout] x len(hidden) -> Linear head."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int],
        *,
        activation: str = "relu",
        norm: str = "none",
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_features
        for h in hidden:
            layers += drop_identity(
                nn.Linear(prev, h, bias=norm != "batchnorm"),
                make_norm(norm, h, "features"),
                make_activation(activation),
            )
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = h
        layers.append(nn.Linear(prev, num_classes))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # named ``x`` like every zoo model, so export dynamic_shapes={"x": ...} works
        return super().forward(x)

    def arch_options(self) -> dict[str, Any]:
        """Current hidden widths (after pruning they differ from the options it was built with)."""
        linears = [m for m in self if isinstance(m, nn.Linear)]
        return {"hidden": [m.out_features for m in linears[:-1]]}


@register_model(
    "mlp",
    checks=_CHECKS,
    description="Multilayer perceptron on the flattened input",
)
def mlp(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    width: int = 256,
    depth: int = 2,
    hidden: list[int] | None = None,
    activation: str = "relu",
    norm: str = "none",
    dropout: float = 0.0,
    init: str = "default",
) -> nn.Module:
    """Multilayer perceptron on the flattened input (any input shape).

    ``depth`` hidden layers of ``width`` units (0: a linear model). ``hidden`` overrides both with explicit
    per-layer widths, e.g. ``[512, 128]``: this is how a pruned MLP's widths are stored in
    ``arch.json`` and rebuilt before loading its safetensors weights
    (see :meth:`MLP.arch_options`).
    """
    widths = list(hidden) if hidden is not None else [int(width)] * depth
    model = MLP(
        math.prod(input_shape), num_classes, widths,
        activation=activation, norm=norm, dropout=dropout,
    )
    init_weights(model, init)
    return model
