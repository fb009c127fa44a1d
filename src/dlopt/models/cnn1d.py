"""``cnn1d``: a 1-D CNN for MNIST-1D and other signals, input ``(C, L)`` or ``(L,)``."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from dlopt.models._registry import positive_int, register_model
from dlopt.models.layers import (
    check_widths,
    conv_block,
    conv_widths,
    drop_identity,
    infer_shape,
    init_weights,
    make_pool,
    signal_input,
)

__all__ = ["Conv1dClassifier", "cnn1d"]

# width counts units/channels here, not a multiplier
_WIDTH_UNITS = {"width": positive_int}


class Conv1dClassifier(nn.Sequential):
    """``features`` (conv-norm-act-pool stack) then ``classifier`` (flatten, dropout, linear)."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__(OrderedDict(features=features, classifier=classifier))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # named ``x`` like every zoo model, so export dynamic_shapes={"x": ...} works
        return super().forward(x)

    def arch_options(self) -> dict[str, Any]:
        """Current conv widths (``channels``), for rebuilding a pruned model."""
        return {"channels": conv_widths(self.features)}


@register_model(
    "cnn1d",
    checks=_WIDTH_UNITS,
    default_input=(40,),
    description="1-D CNN for signals (C, L) or (L,), e.g. MNIST-1D",
)
def cnn1d(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    width: int = 64,
    depth: int = 3,
    channels: list[int] | None = None,
    kernel_size: int = 5,
    activation: str = "relu",
    norm: str = "batchnorm",
    pool: str = "max",
    dropout: float = 0.0,
    init: str = "default",
) -> nn.Module:
    """1-D CNN: ``depth`` conv blocks of ``width`` channels, each halving the length.

    Each block is conv(``kernel_size``, same padding) -> norm -> activation -> pool 2 (while
    the length is at least 2); the flattened features (position kept, which MNIST-1D needs)
    go through dropout to a linear head. ``channels`` overrides the per-layer widths
    (``depth`` values) for rebuilding pruned models.
    """
    check_widths("cnn1d", "channels", channels, depth)
    prefix, c, length = signal_input(input_shape, model="cnn1d")
    layers: list[nn.Module] = list(prefix)
    prev = c
    for out in channels or [int(width)] * depth:
        layers.extend(conv_block(prev, out, dims=1, kernel=kernel_size,
                                 activation=activation, norm=norm))
        if length >= 2:
            layers.append(make_pool(pool, dims=1))
            length //= 2
        prev = out
    features = nn.Sequential(*layers)
    flat = math.prod(infer_shape(features, input_shape, model="cnn1d"))
    classifier = nn.Sequential(*drop_identity(
        nn.Flatten(),
        nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        nn.Linear(flat, num_classes),
    ))
    model = Conv1dClassifier(features, classifier)
    init_weights(model, init)
    return model
