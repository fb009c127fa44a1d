"""Quantization-aware training: fake-quantized weights (per-channel symmetric INT8) and PACT
activations (ReLU replaced by a clip at a learnable ``alpha``, quantized to 8 bits), both with
a straight-through estimator, fine-tuned by ``dlopt.train``, then exported to INT8 ONNX.

Export: the weights are baked onto the INT8 grid, PACT becomes a plain clip at the learned
``alpha`` (an ONNX ``Clip``), and ONNX Runtime's static quantizer calibrates that graph, so its
activation ranges are bounded by what training learned. ``model.safetensors`` holds the
QAT-trained weights for the zoo architecture (plain ReLU); ``model.int8.onnx`` is the
deployable model and ``qat.json`` the learned clip values.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from dlopt.compress import _rundir as rd
from dlopt.compress._types import MeasureSettings
from dlopt.compress.measure import export_model, measure_onnx

__all__ = ["FakeQuantWeight", "PACT", "prepare_qat", "bake", "qat_candidate", "weight_layers"]

log = logging.getLogger(__name__)


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward ``q``, backward identity to ``x`` (straight-through estimator). Without grad
    (evaluation, baking) it is ``q`` exactly: ``x + (q - x)`` is off by float rounding."""
    if not torch.is_grad_enabled():
        return q
    return x + (q - x).detach()


class FakeQuantWeight(nn.Module):
    """Parametrization: symmetric per-output-channel ``bits``-bit weights, STE gradient."""

    def __init__(self, bits: int = 8) -> None:
        super().__init__()
        self.qmax = 2 ** (bits - 1) - 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, w.dim()))
        scale = w.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-8) / self.qmax
        return _ste(w, (w / scale).round().clamp(-self.qmax, self.qmax) * scale)


class PACT(nn.Module):
    """``min(relu(x), alpha)`` with learnable ``alpha``, fake-quantized to ``bits`` unsigned
    levels while training (``fake=False``: the plain clip, for export)."""

    def __init__(self, alpha: float = 6.0, bits: int = 8) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.levels = 2 ** bits - 1
        self.fake = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.minimum(F.relu(x), self.alpha)  # d/d(alpha) = 1 where x > alpha (PACT)
        if not self.fake:
            return y
        scale = self.alpha.detach().clamp_min(1e-6) / self.levels
        return _ste(y, (y / scale).round() * scale)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv and linear layers in forward-definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def _replace_relus(model: nn.Module, make: Callable[[], nn.Module]) -> list[str]:
    names = []
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is nn.ReLU:
                setattr(parent, child_name, make())
                names.append(f"{parent_name}.{child_name}".lstrip("."))
    return names


def parametrize_weights(model: nn.Module, make: Callable[[], nn.Module], *, skip: set[str] = frozenset()) -> list[str]:
    """Register ``make()`` as the weight parametrization of every conv/linear not in ``skip``."""
    done = []
    for name, m in weight_layers(model):
        if name not in skip:
            parametrize.register_parametrization(m, "weight", make())
            done.append(name)
    return done


def prepare_qat(model: nn.Module, *, bits: int = 8, alpha: float = 6.0) -> nn.Module:
    """Insert fake quantization in place: weights of every conv/linear, PACT for every ReLU."""
    parametrize_weights(model, lambda: FakeQuantWeight(bits))
    _replace_relus(model, lambda: PACT(alpha, bits))
    return model


def bake(model: nn.Module) -> nn.Module:
    """Fold the parametrizations into plain weights (their quantized values), in place."""
    with torch.no_grad():
        _bake(model)
    return model


def _bake(model: nn.Module) -> None:
    for _, m in weight_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    for m in model.modules():
        if isinstance(m, PACT):
            m.fake = False
            # a constant of the exported Clip from now on: as a parameter it was counted in the
            # INT8 file's params (one extra per ReLU) though the deployed model has no such weight
            alpha = m.alpha.detach().clone()
            del m.alpha
            m.register_buffer("alpha", alpha)


def zoo_weights(model: nn.Module, zoo: nn.Module) -> nn.Module:
    """Load ``model``'s baked weights into the plain zoo model ``zoo`` (PACT alphas dropped)."""
    own = zoo.state_dict()
    zoo.load_state_dict({k: v for k, v in model.state_dict().items() if k in own})
    return zoo.eval()


def qat_candidate(source: rd.Source, cand: Path, *, method: str, epochs: int, lr: float,
                  measure: MeasureSettings, calibration: np.ndarray, calibrate_method: str,
                  conv_kernel: str = "auto") -> tuple[dict, dict]:
    """Train with fake quantization, write the candidate run dir, export + quantize; returns
    (measurement of the INT8 file, extra summary fields)."""
    import copy

    from dlopt.compress.quantize import _int8_onnx
    from dlopt.train import rundir

    module = prepare_qat(copy.deepcopy(source.model).train())
    fit = rd.train_module(source, module, rd.work_dir(cand.parent) / "qat", epochs=epochs, lr=lr, name=cand.parent.name)
    trained = bake(fit.model)
    alphas = {n: round(float(m.alpha.detach()), 5) for n, m in trained.named_modules() if isinstance(m, PACT)}
    zoo = zoo_weights(trained, copy.deepcopy(source.model))
    rd.write_model_dir(cand, source, zoo, name=cand.parent.name, trained=fit.summary)
    rundir.write_json(cand / "qat.json", {"bits": 8, "pact_alpha": alphas})
    for f in ("metrics.jsonl",):
        src = fit.run_dir / f
        if src.is_file():
            (cand / f).write_bytes(src.read_bytes())
    export_model(trained, source.bundle.test.x[:2], cand / rd.ONNX, check_inputs=source.bundle.test.x[:256],
                 metadata=source.metadata(), exporter=measure.exporter)
    kernel = _int8_onnx(cand / rd.ONNX, cand / rd.INT8_ONNX, method="static", calibration=calibration,
                        calibrate_method=calibrate_method, per_channel=True, conv_kernel=conv_kernel,
                        measure=measure)
    after = measure_onnx(cand / rd.INT8_ONNX, source.bundle, measure=measure)
    return after, {"pact_alpha": alphas, "qat_epochs": epochs, **kernel}
