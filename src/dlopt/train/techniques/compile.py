"""``torch.compile`` toggle. Off by default: measured slower here for LeNet-5 and only
~10% faster for ResNet-8 after 15-27 s of compilation (STACK-NOTES)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["Compile", "compile_model"]


def compile_model(module: nn.Module, **options: Any) -> Any:
    """The compiled forward of ``module`` (weights stay shared with ``module``)."""
    return torch.compile(module, **options)


class Compile:
    """Compiles the training forward at fit start; evaluation and checkpoints use the raw
    module, so state_dict keys never carry the ``_orig_mod.`` prefix."""

    order = 20  # after channels_last changed the weights' layout

    def __init__(self, **options: Any) -> None:
        self.options = options  # torch.compile keywords, e.g. backend="eager" in tests

    def on_fit_start(self, state: Any) -> None:
        # state.model: the module, or its DDP wrapper (torch.compile(DDP(model)) is the supported order)
        state.model = compile_model(state.model, **self.options)
