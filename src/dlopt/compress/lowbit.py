"""Low-bit research mode: binary (1-bit, ``sign(w) * mean|w|`` per output channel, as in BWN)
and ternary weights (``{-a, 0, +a}`` with threshold ``0.7 * mean|w|``, as in TWN), trained with
a straight-through estimator through ``dlopt.train``.

The first conv and the output layer stay full precision (standard practice: they hold few
weights and most of the accuracy). No runtime here executes 1- or 2-bit weights faster: the
result is reported honestly as accuracy and *packed* size (``packed_bytes``: low-bit layers
at 1 or 2 bits per weight plus one fp32 scale per channel, other tensors at fp32); latency is
that of the same dense fp32 graph.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlopt.compress import _rundir as rd
from dlopt.compress._types import MeasureSettings
from dlopt.compress.measure import measure_torch
from dlopt.compress.qat import _ste, bake, parametrize_weights, weight_layers, zoo_weights
from dlopt.errors import ModelError

__all__ = ["BinaryWeight", "TernaryWeight", "lowbit_candidate", "packed_bytes", "check_lowbit"]

_BITS = {"binary": 1, "ternary": 2}


class BinaryWeight(nn.Module):
    """Parametrization: ``sign(w) * mean|w|`` per output channel, STE gradient."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, w.dim()))
        scale = w.detach().abs().mean(dim=dims, keepdim=True)
        return _ste(w, torch.where(w >= 0, 1.0, -1.0) * scale)


class TernaryWeight(nn.Module):
    """Parametrization: ``{-a, 0, +a}`` per output channel (TWN threshold 0.7 mean|w|)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, w.dim()))
        a = w.detach().abs()
        delta = 0.7 * a.mean(dim=dims, keepdim=True)
        keep = (a > delta).to(w.dtype)
        alpha = (a * keep).sum(dim=dims, keepdim=True) / keep.sum(dim=dims, keepdim=True).clamp_min(1)
        return _ste(w, torch.sign(w) * keep * alpha)


_PARAMETRIZATIONS = {"binary": BinaryWeight, "ternary": TernaryWeight}


def _full_precision(model: nn.Module) -> set[str]:
    layers = weight_layers(model)
    return {layers[0][0], layers[-1][0]} if layers else set()


def packed_bytes(model: nn.Module, lowbit: set[str], bits: int) -> int:
    """Bytes if ``lowbit`` layers' weights were packed at ``bits`` per weight (+ fp32 scale per
    output channel) and every other tensor stayed fp32."""
    layers = dict(weight_layers(model))
    total = 0
    for name, t in model.state_dict().items():
        layer, _, leaf = name.rpartition(".")
        if leaf == "weight" and layer in lowbit:
            total += -(-t.numel() * bits // 8) + 4 * int(layers[layer].weight.shape[0])
        else:
            total += t.numel() * t.element_size()
    return total


def check_lowbit(model: nn.Module, name: str, method: str) -> None:
    """ModelError before any work when ``model`` has no conv/linear layer between its first
    and last (kept fp32): ``method`` would train and report an unchanged fp32 model."""
    layers = weight_layers(model)
    if len(layers) <= len(_full_precision(model)):
        raise ModelError(f"--method {method}: model {name!r} has {len(layers)} conv/linear layer(s) and the "
                         f"first and last stay fp32, so nothing would be quantized; allowed: models with 3 or "
                         f"more conv/linear layers (GRU/LSTM weights are not quantized)")


def lowbit_candidate(source: rd.Source, cand: Path, *, method: str, epochs: int, lr: float,
                     measure: MeasureSettings, calibration: np.ndarray, calibrate_method: str,
                     conv_kernel: str = "auto") -> tuple[dict, dict]:
    """Train ``method`` (binary | ternary) weights, write the candidate run dir; returns
    (measurement, extra summary fields). ``calibration``, ``calibrate_method`` and
    ``conv_kernel`` are the quantize builders' common interface; low-bit files use none."""
    module = copy.deepcopy(source.model).train()
    skip = _full_precision(module)
    lowbit = set(parametrize_weights(module, _PARAMETRIZATIONS[method], skip=skip))
    fit = rd.train_module(source, module, rd.work_dir(cand.parent) / method, epochs=epochs, lr=lr,
                          name=cand.parent.name)
    zoo = zoo_weights(bake(fit.model), copy.deepcopy(source.model))
    rd.write_model_dir(cand, source, zoo, name=cand.parent.name, trained=fit.summary)
    # dense fp32 graph: latency is not what low-bit weights would give, so it is not timed
    after = measure_torch(zoo, source.bundle, cand / rd.ONNX, measure=MeasureSettings(
        latency=False, exporter=measure.exporter), metadata=source.metadata())
    bits = _BITS[method]
    after["packed_bytes"] = packed_bytes(zoo, lowbit, bits)
    levels = {n: max(int(torch.unique(row).numel()) for row in m.weight.detach().flatten(1))
              for n, m in weight_layers(zoo) if n in lowbit}
    extra: dict[str, Any] = {"bits": bits, "lowbit_layers": sorted(lowbit), "full_precision_layers": sorted(skip),
                             "max_levels_per_channel": max(levels.values()) if levels else 0,
                             "note": "no runtime here runs 1/2-bit weights faster: size is the packed estimate, "
                                     "latency is not measured"}
    return after, extra
