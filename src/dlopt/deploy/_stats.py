"""Pure functions behind the benchmark figures: latency statistics, verdicts and the weight
count of an ONNX graph.

A verdict compares medians. The noise threshold is the two runs' relative IQRs combined
(``hypot(iqr_a / p50_a, iqr_b / p50_b)``), never below ``floor`` (5%): within-run spread
misses the drift between processes, which was up to ~2x on this shared machine. Measuring in
rounds (every contestant once per round) and pairing the ratios round by round is what
removes that drift from a verdict.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np

__all__ = ["latency_stats", "verdict", "weight_elements", "NOISE_FLOOR"]

NOISE_FLOOR = 0.05


def latency_stats(times_ms: Sequence[float], batch_size: int) -> dict[str, float]:
    """p50/p95/p99, mean, IQR and MAD in ms, runs, and throughput (samples/s at the median)."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("latency_stats needs at least one timing")
    p25, p50, p75, p95, p99 = np.percentile(t, [25, 50, 75, 95, 99])
    return {
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "mean_ms": float(t.mean()),
        "iqr_ms": float(p75 - p25),
        "mad_ms": float(np.median(np.abs(t - p50))),
        "runs": int(t.size),
        "throughput": float(batch_size * 1000.0 / p50) if p50 > 0 else math.inf,
    }


def verdict(base: dict[str, float], other: dict[str, float], *, floor: float = NOISE_FLOOR,
            paired: Sequence[float] | None = None) -> tuple[float, float, str]:
    """``(speedup, noise_threshold, verdict)`` of ``other`` against ``base`` (both from
    :func:`latency_stats`): faster / slower when the median ratio leaves the noise band.

    ``paired`` holds one speedup per measurement round (both timed in the same round, so
    drift between rounds cancels): the speedup is then their median, and a verdict other
    than "no change" needs every round beyond the noise band on the same side (a same-sized
    model read "1.06x faster" on rounds 1.059, 1.068, 1.008 with a band of 0.058).
    """
    if paired:
        speedup = float(np.median(paired))
    else:
        speedup = base["p50_ms"] / other["p50_ms"] if other["p50_ms"] > 0 else math.inf
    rel = [s["iqr_ms"] / s["p50_ms"] if s["p50_ms"] > 0 else 0.0 for s in (base, other)]
    threshold = max(floor, math.hypot(*rel))
    rounds = list(paired or [speedup])
    if min(rounds) > 1.0 + threshold:
        return speedup, threshold, "faster"
    if max(rounds) < 1.0 / (1.0 + threshold):
        return speedup, threshold, "slower"
    return speedup, threshold, "no change"


# ops whose initializer inputs are learned weights and biases even when they hold one element
# (a Linear(.., 1)'s bias, a 1-channel norm's scale, PReLU's single slope)
_LAYERS = frozenset({"Gemm", "MatMul", "Conv", "ConvTranspose", "BatchNormalization", "LayerNormalization",
                     "InstanceNormalization", "GroupNormalization", "PRelu", "GRU", "LSTM", "RNN"})
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def weight_elements(graph: Any) -> int:
    """Weight elements of an ONNX graph (``onnx.GraphProto``, float or QDQ INT8): the count a
    run's ``params`` makes of the PyTorch model. Not weights: Q/DQ scales and zero points, int64
    initializers (shapes, axes), and a tensor of one element that no layer takes as weight or
    bias nor the model names as its own: the exporter's literal constants (the 0-d 0.0 a
    GRU/LSTM's zero state is expanded from, ViT's attention scale) and QAT's PACT clip bounds
    (buffers in the PyTorch model). A learned scalar (``nn.Parameter(torch.tensor(2.))``) counts."""
    from onnx import TensorProto

    users: dict[str, list[Any]] = {}
    made_by: dict[str, Any] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
        made_by.update(dict.fromkeys(node.output, node))
    quant_aux = {name for node in graph.node if node.op_type in _QDQ for name in node.input[1:]}
    total = 0
    for t in graph.initializer:
        size = int(np.prod(t.dims))
        if t.name in quant_aux or t.data_type == TensorProto.INT64:
            continue
        if size > 1 or _feeds_a_layer(t.name, users, made_by) or _learned_scalar(t.name, users):
            total += size
    return total


# names the exporters give their own constants: dynamo ``val_12``, legacy ``onnx::Mul_7`` and
# ``/blocks/attn/Constant_output_0``; a parameter or buffer keeps its dotted module name
_GENERATED = re.compile(r"^(val_\d+|.*_val_\d+|scalar_tensor_default(_\d+)?|onnx::.*|.*/.*)$")
_CLIPS = frozenset({"Clip", "Min", "Max"})


def _learned_scalar(name: str, users: dict[str, list[Any]]) -> bool:
    """Whether a one-element tensor is a model's own scalar parameter (a ReZero alpha): named by
    the model, not the exporter, and not only a clip bound (QAT's PACT alpha, a buffer)."""
    nodes = users.get(name, [])
    return not _GENERATED.match(name) and not (nodes and all(n.op_type in _CLIPS for n in nodes))


def _feeds_a_layer(name: str, users: dict[str, list[Any]], made_by: dict[str, Any]) -> bool:
    """Whether a layer takes ``name`` as an input, looking through a QDQ file's DequantizeLinear;
    an Add of a MatMul's output is a Linear's bias on (N, L, F) inputs."""
    for node in users.get(name, []):
        if node.op_type == "DequantizeLinear" and node.input[0] == name:
            if _feeds_a_layer(node.output[0], users, made_by):
                return True
        elif node.op_type in _LAYERS or (node.op_type == "Add" and any(
                _source_op(i, made_by) == "MatMul" for i in node.input if i != name)):
            return True
    return False


def _source_op(name: str, made_by: dict[str, Any]) -> str | None:
    """The op that computes ``name``, looking back through Q/DQ pairs."""
    node = made_by.get(name)
    while node is not None and node.op_type in _QDQ:
        node = made_by.get(node.input[0])
    return None if node is None else node.op_type
