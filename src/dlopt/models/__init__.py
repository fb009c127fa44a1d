"""The model zoo: ``create_model(name, input_shape=..., num_classes=..., **options)``.

Models take float32 ``(N, *input_shape)`` and return logits ``(N, num_classes)``. Any user
``nn.Module`` is accepted wherever a model is expected; :func:`summary` works on any module.
"""

from __future__ import annotations

from dlopt.models._registry import (
    MODELS,
    arch_options,
    check_model_options,
    create_model,
    list_models,
    model_entry,
    model_options,
    register_model,
)
from dlopt.models.summary import ModelSummary, summary

# importing the zoo modules registers their models
from dlopt.models import cnn, cnn1d, mlp, resnet, rnn, vit  # noqa: E402,F401  isort: skip

__all__ = [
    "MODELS",
    "ModelSummary",
    "arch_options",
    "check_model_options",
    "create_model",
    "list_models",
    "model_entry",
    "model_options",
    "register_model",
    "summary",
]
