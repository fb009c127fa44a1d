"""Compression that is measured on the serving runtime and guarded by an accuracy budget.

    res = prune_run("runs/resnet", "runs/pruned", method="l1", target="macs=0.5")
    res = distill_run("runs/resnet", {"name": "resnet", "width": 0.5}, "runs/kd")
    res = quantize_run("runs/pruned", "runs/int8", method="static")

Each verb writes a run directory (training-engine contract + ``accepted``/``reason``) and
returns a :class:`CompressResult`. See docs/compression.md. Heavy libraries load on first use.
"""

from __future__ import annotations

from dlopt._lazy import lazy_exports

# public name -> private module that defines it (imported on first use)
_LAZY = {
    "Target": "dlopt.compress._types",
    "parse_target": "dlopt.compress._types",
    "Budget": "dlopt.compress._types",
    "MeasureSettings": "dlopt.compress._types",
    "CompressResult": "dlopt.compress._types",
    "judge": "dlopt.compress.guard",
    "measure_torch": "dlopt.compress.measure",
    "measure_onnx": "dlopt.compress.measure",
    "PRUNE_METHODS": "dlopt.compress.prune",
    "prune_run": "dlopt.compress.prune",
    "prune_structured": "dlopt.compress.prune",
    "prune_unstructured": "dlopt.compress.prune",
    "distill_run": "dlopt.compress.distill",
    "KnowledgeDistillation": "dlopt.compress.distill",
    "kd_loss": "dlopt.compress.distill",
    "QUANT_METHODS": "dlopt.compress.quantize",
    "quantize_run": "dlopt.compress.quantize",
    "quantize_onnx": "dlopt.compress.quantize",
    "pick_conv_kernel": "dlopt.compress.quantize",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
