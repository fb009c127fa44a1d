"""Transfer learning: initialize a model from another run, checkpoint or weights file.

Parameters whose names and shapes match are copied. A head whose shape differs (another
class count) keeps its fresh initialization when ``new_head`` is on; otherwise the mismatch
is an error, as is any other layer of another shape. Freezing and unfreezing live in
``techniques/freeze.py``; discriminative learning rates in the optimizer's ``layer_lr``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from dlopt.errors import ConfigError
from dlopt.train import checkpoint as io

__all__ = ["read_init_weights", "init_from"]

log = logging.getLogger(__name__)


def read_init_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from a run dir (its ``model.safetensors``), a checkpoint dir or a
    ``.safetensors`` file."""
    p = Path(path)
    if p.is_file():
        return io.load_weights(p.read_bytes(), name=str(p))
    if (p / io.WEIGHTS).is_file() and not (p / io.MANIFEST).is_file():
        return io.load_weights((p / io.WEIGHTS).read_bytes(), name=str(p / io.WEIGHTS))
    if p.exists():  # an EMA run's checkpoint: its EMA weights, as its model.safetensors holds
        return io.read_checkpoint(p).model_weights
    raise ConfigError(f"train.transfer.init_from={str(path)!r}: no such run, checkpoint or file")


def _head(module: nn.Module) -> str:
    """The output layer's name prefix: the module of the last parameter (every zoo model);
    "" when the model is a single layer (all of it is the head)."""
    last = [n for n, _ in module.named_parameters()][-1:]
    return last[0].rsplit(".", 1)[0] + "." if last and "." in last[0] else ""


def _shape_change(k: str, there: torch.Tensor, here: torch.Tensor) -> str:
    return f"train.transfer.init_from: {k} has shape {tuple(there.shape)} there but {tuple(here.shape)} here"


def init_from(module: nn.Module, weights: dict[str, torch.Tensor], *, new_head: bool = True) -> list[str]:
    """Copy matching ``weights`` into ``module``; returns the names left freshly initialized.
    Only the head may differ in shape (``new_head``): another width or input shape elsewhere
    would leave most layers fresh while the run claims to fine-tune."""
    own = module.state_dict()
    mismatched = [k for k, v in own.items() if k in weights and weights[k].shape != v.shape]
    head = _head(module)
    body = [k for k in mismatched if not k.startswith(head)]
    if body:
        raise ConfigError(f"{_shape_change(body[0], weights[body[0]], own[body[0]])}; only the head "
                          f"({head.rstrip('.')}) may differ: use the source's model and options (width, input shape)")
    if mismatched and not new_head:
        k = mismatched[0]
        raise ConfigError(f"{_shape_change(k, weights[k], own[k])}; set train.transfer.new_head=true to "
                          f"re-initialize it")
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ConfigError("train.transfer.init_from: no parameter name/shape matches this model")
    module.load_state_dict(usable, strict=False)
    fresh = [k for k in own if k not in usable]
    if fresh:
        log.info("transfer: %d tensors copied, %d left fresh: %s", len(usable), len(fresh), ", ".join(fresh))
    return fresh
