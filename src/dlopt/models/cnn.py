"""Small 2-D CNNs: ``lenet5`` and ``convnet`` (2 conv + 2 fc with dropout)."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from dlopt.models._registry import register_model
from dlopt.models.layers import (
    check_widths,
    conv_block,
    conv_widths,
    image_input,
    infer_shape,
    init_weights,
    make_pool,
    scaled,
)
from dlopt.models.mlp import MLP

__all__ = ["ConvClassifier", "lenet5", "convnet"]


class ConvClassifier(nn.Sequential):
    """``features`` (conv stack) followed by ``classifier`` (an :class:`MLP` head)."""

    def __init__(self, features: nn.Sequential, classifier: MLP) -> None:
        super().__init__(OrderedDict(features=features, classifier=classifier))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # named ``x`` like every zoo model, so export dynamic_shapes={"x": ...} works
        return super().forward(x)

    def arch_options(self) -> dict[str, Any]:
        """Current conv channels and fc widths, for rebuilding a pruned model."""
        return {"channels": conv_widths(self.features), **self.classifier.arch_options()}


def _conv_classifier(
    model: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    convs: list[tuple[int, int, int]],
    hidden: list[int],
    activation: str,
    norm: str,
    pool: str,
    dropout: float,
    conv_dropout: float,
) -> ConvClassifier:
    """conv blocks given as (channels, kernel, padding), each followed by a 2x2 pool."""
    prefix, c, h, w = image_input(input_shape, model=model)
    layers: list[nn.Module] = list(prefix)
    prev = c
    for out, kernel, padding in convs:
        layers += [
            conv_block(prev, out, dims=2, kernel=kernel, padding=padding,
                       activation=activation, norm=norm),
            make_pool(pool, dims=2),
        ]
        prev = out
    if conv_dropout > 0:
        layers.append(nn.Dropout(conv_dropout))
    features = nn.Sequential(*layers)
    flat = math.prod(infer_shape(features, input_shape, model=model))
    head = MLP(flat, num_classes, hidden, activation=activation, norm=norm, dropout=dropout)
    return ConvClassifier(features, head)


@register_model("lenet5", description="LeNet-5: conv 6@3x3, conv 16@5x5, fc 120, fc 84")
def lenet5(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    width: float = 1.0,
    channels: list[int] | None = None,
    hidden: list[int] | None = None,
    activation: str = "relu",
    norm: str = "none",
    pool: str = "max",
    dropout: float = 0.0,
    init: str = "default",
) -> nn.Module:
    """LeNet-5: conv 6@3x3 pad 1, pool, conv 16@5x5, pool, fc 120, fc 84, fc C.

    For 28x28 input: 28 -> pool 14 -> conv5 10 -> pool 5 -> 16*5*5=400 -> 120 -> 84 -> C.
    ``width`` multiplies every layer width. ``channels`` (2 conv widths) and ``hidden``
    (2 fc widths) override them: a pruned LeNet stores its widths there (arch.json, see
    :meth:`ConvClassifier.arch_options`) and is rebuilt before loading its weights.
    """
    check_widths("lenet5", "channels", channels, 2)
    check_widths("lenet5", "hidden", hidden, 2)
    c1, c2 = channels or (scaled(6, width), scaled(16, width))
    model = _conv_classifier(
        "lenet5", input_shape, num_classes,
        convs=[(c1, 3, 1), (c2, 5, 0)],
        hidden=list(hidden or (scaled(120, width), scaled(84, width))),
        activation=activation, norm=norm, pool=pool, dropout=dropout, conv_dropout=0.0,
    )
    init_weights(model, init)
    return model


@register_model("convnet", description="2 conv (32, 64) + 2 fc (128) with dropout")
def convnet(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    width: float = 1.0,
    channels: list[int] | None = None,
    hidden: list[int] | None = None,
    kernel_size: int = 3,
    activation: str = "relu",
    norm: str = "batchnorm",
    pool: str = "max",
    dropout: float = 0.25,
    init: str = "default",
) -> nn.Module:
    """Two conv blocks (32, 64 channels) and two fc layers (128, C) with dropout.

    Each conv block is conv -> norm -> activation -> 2x2 pool; ``dropout`` applies after the
    convs and before each fc layer. ``width`` multiplies every width; ``channels`` (2 conv
    widths) and ``hidden`` (1 fc width) override them for rebuilding pruned models.
    """
    check_widths("convnet", "channels", channels, 2)
    check_widths("convnet", "hidden", hidden, 1)
    c1, c2 = channels or (scaled(32, width), scaled(64, width))
    model = _conv_classifier(
        "convnet", input_shape, num_classes,
        convs=[(c1, kernel_size, kernel_size // 2), (c2, kernel_size, kernel_size // 2)],
        hidden=list(hidden or [scaled(128, width)]),
        activation=activation, norm=norm, pool=pool, dropout=dropout, conv_dropout=dropout,
    )
    init_weights(model, init)
    return model
