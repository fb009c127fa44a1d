"""Measure a model the way it will be served: the guard's metric (accuracy, or R2 for
regression: ``metric`` names it, ``val_<metric>``/``test_<metric>`` hold it) on the validation and test splits,
parameters, MACs, size on disk, sparsity, and ONNX Runtime p50 latency (the deploy room's
benchmark harness: a fresh worker process, fixed threads).

    m = measure_torch(model, bundle, onnx_path, measure=MeasureSettings(), metadata=meta)
    m = measure_onnx("model.int8.onnx", bundle, measure=MeasureSettings())
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlopt.compress._types import MeasureSettings
from dlopt.train import class_probabilities

__all__ = ["measure_torch", "measure_onnx", "ort_latency", "torch_accuracy", "torch_score",
           "sparsity", "weight_tensors", "export_model", "onnx_size_reduction"]

log = logging.getLogger(__name__)

# check samples for the export parity check (the deploy room's minimum)
_PARITY_SAMPLES = 256


def _score(outputs: np.ndarray, y: np.ndarray, metric: str) -> float:
    """``accuracy`` (top-1 of the class scores) or ``r2`` (the outputs are the predicted values)."""
    from dlopt.train.metrics import r2

    if not len(y):
        return float("nan")
    if metric == "r2":
        return r2(np.asarray(y, np.float64), outputs.reshape(len(y)).astype(np.float64))
    return float((class_probabilities(outputs).argmax(1) == y).mean())


def _test_figures(outputs: np.ndarray, y: np.ndarray, metric: str) -> dict[str, Any]:
    """``test_<metric>`` and, for accuracy, the ``confusion_matrix`` of the same predictions."""
    from dlopt.train.metrics import confusion_matrix

    out: dict[str, Any] = {f"test_{metric}": _score(outputs, y, metric)}
    if metric == "accuracy" and len(y):
        out["confusion_matrix"] = confusion_matrix(np.asarray(y, np.int64), class_probabilities(outputs))
    return out


@torch.inference_mode()
def _torch_outputs(model: nn.Module, x: torch.Tensor, batch: int = 1024) -> np.ndarray:
    was = model.training
    model.eval()
    outs = [model(x[i:i + batch]).float().cpu().numpy() for i in range(0, len(x), batch)]
    model.train(was)
    return np.concatenate(outs)


def _onnx_outputs(runner: Any, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Outputs of a loaded ``OnnxModel`` on ``x``, ``batch`` rows per run."""
    return runner.run_batches(x[i:i + batch] for i in range(0, len(x), batch))


def torch_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, metric: str = "accuracy",
                batch: int = 1024) -> float:
    """``metric`` (accuracy | r2) of ``model`` (eval mode) on preprocessed ``x``."""
    return _score(_torch_outputs(model, x, batch), y.cpu().numpy(), metric)


def torch_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch: int = 1024) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on preprocessed ``x``."""
    return torch_score(model, x, y, batch=batch)


def weight_tensors(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(module name, module, parameter name)`` of every conv/linear weight and every recurrent
    weight matrix (``weight_ih_l0``, ...): what unstructured pruning zeroes and sparsity counts."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            out.append((name, m, "weight"))
        elif isinstance(m, nn.RNNBase):
            out += [(name, m, w) for w in m._flat_weights_names if w.startswith("weight")]
    return out


def sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros among the weights of conv, linear and recurrent layers."""
    weights = [getattr(m, w) for _, m, w in weight_tensors(model)]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / total if total else 0.0


def _weight_sizes(model: nn.Module) -> dict[str, int]:
    """Dense safetensors bytes and gzip'd bytes (what unstructured sparsity shrinks)."""
    from dlopt.train.checkpoint import weights_bytes

    data = weights_bytes(model)
    return {"size_bytes": len(data), "compressed_bytes": len(gzip.compress(data, compresslevel=6))}


def export_model(model: nn.Module, sample: torch.Tensor, path: Path, *, check_inputs: Any,
                 metadata: dict[str, Any] | None, exporter: str) -> Path:
    """FP32 ONNX export with the deploy room's parity check."""
    from dlopt.deploy import export_onnx

    export_onnx(model, sample[:2], path, metadata=metadata or {}, check_inputs=check_inputs,
                exporter=exporter, samples=_PARITY_SAMPLES)
    return path


def ort_latency(path: str | Path, x: np.ndarray, measure: MeasureSettings) -> dict[str, float]:
    """``{"<batch>": p50 ms}`` on ONNX Runtime for ``measure.batch_sizes`` (1 worker process)."""
    from dlopt.deploy import Contestant, benchmark

    need = max(measure.batch_sizes)
    rows = x if len(x) >= need else np.resize(x, (need, *x.shape[1:]))  # tile a small split
    report = benchmark([Contestant.onnx(path)], rows, None, batch_sizes=measure.batch_sizes,
                       threads=measure.threads, min_runs=measure.min_runs,
                       min_seconds=measure.min_seconds)
    entries = report["contestants"]["onnxruntime"]
    return {str(b): round(float(entries[str(b)]["p50_ms"]), 4) for b in measure.batch_sizes}


def _val_split(bundle: Any) -> Any:
    """The validation split, or None: never the test split in its place (the guard decides on
    this figure, and deciding on test leaks it; ``_holdout`` carves one from train instead)."""
    return bundle.val if bundle.val is not None and len(bundle.val) else None


def measure_torch(model: nn.Module, bundle: Any, onnx_path: Path | None, *, measure: MeasureSettings,
                  metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The guard's metric (val/test; the test predictions' ``confusion_matrix`` with accuracy),
    params, MACs, sizes, sparsity of ``model``; exported to
    ``onnx_path`` (parity-checked) and timed there when ``measure.latency``."""
    from dlopt.compress.guard import guard_metric
    from dlopt.models import summary

    model = model.eval()
    val, metric = _val_split(bundle), guard_metric(bundle.info.task)
    s = summary(model, tuple(bundle.info.input_shape))
    out: dict[str, Any] = {
        "metric": metric,
        f"val_{metric}": None if val is None else torch_score(model, val.x, val.y, metric=metric),
        **_test_figures(_torch_outputs(model, bundle.test.x), bundle.test.y.cpu().numpy(), metric),
        "params": s.params, "macs": s.macs, **_weight_sizes(model),
        "sparsity": round(sparsity(model), 4),
    }
    if onnx_path is not None:
        export_model(model, bundle.test.x[:2], onnx_path, check_inputs=bundle.test.x[:_PARITY_SAMPLES],
                     metadata=metadata, exporter=measure.exporter)
        out["onnx_bytes"] = onnx_path.stat().st_size
        if measure.latency:
            out["latency_ms"] = ort_latency(onnx_path, bundle.test.x.numpy(), measure)
    return out


def measure_onnx(path: Path, bundle: Any, *, measure: MeasureSettings) -> dict[str, Any]:
    """The guard's metric (val/test; the test predictions' ``confusion_matrix`` with accuracy) on
    ONNX Runtime, file size and latency of an ONNX file."""
    from dlopt.compress.guard import guard_metric
    from dlopt.deploy import OnnxModel

    runner = OnnxModel.load(path)
    meta = runner.metadata
    val, metric = _val_split(bundle), guard_metric(bundle.info.task)
    out: dict[str, Any] = {
        "metric": metric,
        f"val_{metric}": None if val is None else _score(_onnx_outputs(runner, val.x.numpy()), val.y.numpy(), metric),
        **_test_figures(_onnx_outputs(runner, bundle.test.x.numpy()), bundle.test.y.numpy(), metric),
        "params": meta.params, "macs": meta.macs, "size_bytes": path.stat().st_size,
        "onnx_bytes": path.stat().st_size,
    }
    if measure.latency:
        out["latency_ms"] = ort_latency(path, bundle.test.x.numpy(), measure)
    return out


def onnx_size_reduction(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """``{"onnx_size_reduction": fraction}`` of ONNX file bytes removed from ``before``'s file to
    ``after``'s (like with like: ``size_bytes`` of an FP32 source is its safetensors weights, of
    an INT8 candidate its ONNX file); empty unless both files were written."""
    b, a = before.get("onnx_bytes"), after.get("onnx_bytes")
    return {"onnx_size_reduction": round(1 - a / b, 4)} if a is not None and b else {}
