"""A small static INT8 helper for benchmarking an ``--int8`` contestant.

Quantization proper (recipes, accuracy checks, per-layer choices) belongs to
``dlopt.compress``; this only turns an exported FP32 file into a calibrated QDQ INT8 file with
ONNX Runtime's tooling, keeping the dlopt metadata so the result serves like its source.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dlopt.errors import ModelError

__all__ = ["quantize_static_onnx", "shift_weight_zero_points", "quiet_quantization_notes"]


class _Reader:
    """``CalibrationDataReader``: feeds ``x`` to the model in batches of ``batch``."""

    def __init__(self, name: str, x: np.ndarray, batch: int) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {name: np.ascontiguousarray(x[i:i + batch], dtype=np.float32)}
            for i in range(0, len(x), batch))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_static_onnx(src: str | os.PathLike, dst: str | os.PathLike, calibration: np.ndarray,
                         *, per_channel: bool = True, batch: int = 32,
                         calibrate_method: str = "minmax", activation: str = "int8") -> Path:
    """Write a static INT8 (QDQ, per-channel weights) copy of ``src`` calibrated on ``calibration``
    (model inputs, float32) to ``dst``; dlopt metadata is carried over. ``calibrate_method``:
    minmax | entropy | percentile | distribution (ONNX Runtime's calibrators). ``activation``:
    int8 | uint8 activations (weights stay int8; U8S8 is the fast pair on x86 without AMX)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    from dlopt.deploy._runtime import OnnxModel

    source = OnnxModel.load(src)  # checks external-data paths before ORT's tools read it
    methods = {m.name.lower(): m for m in CalibrationMethod}
    if calibrate_method not in methods:
        raise ModelError(f"calibration method {calibrate_method!r} is unknown; allowed: {', '.join(methods)}")
    act_types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    if activation not in act_types:
        raise ModelError(f"activation type {activation!r} is unknown; allowed: {', '.join(act_types)}")
    if len(calibration) == 0:
        raise ModelError("quantize_static_onnx: calibration needs at least one sample")
    reader = _Reader(source.input_name, np.asarray(calibration), batch)
    CalibrationDataReader.register(_Reader)
    out = Path(dst)
    with tempfile.TemporaryDirectory(prefix="dlopt-quant-") as tmp:
        staged = Path(tmp) / out.name
        with quiet_quantization_notes():
            quantize_static(str(src), str(staged), reader, quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=act_types[activation],
                            weight_type=QuantType.QInt8, calibrate_method=methods[calibrate_method])
        proto = onnx.load(str(staged))
    del proto.metadata_props[:]
    meta: Any = onnx.load(str(src), load_external_data=False).metadata_props
    for entry in meta:
        proto.metadata_props.add(key=entry.key, value=entry.value)
    onnx.save(proto, str(out))
    return out


def shift_weight_zero_points(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """Copy a QDQ INT8 file to ``dst`` with every symmetric int8 weight (zero point 0) moved
    one step: stored integers and zero point shift by the same -1 (or +1 where a tensor holds
    -128), so every dequantized weight, and every output, is bit-for-bit unchanged. Returns the
    number of weight tensors moved.

    Why: ONNX Runtime's QLinearConv runs its symmetric direct-convolution kernel (AVX-512 VNNI
    at best) only when the weight zero point is 0; any other zero point takes im2col + QGEMM,
    which has AMX kernels. On an AMX CPU the moved ResNet-14 x2 ran 16.2 ms per batch of 64
    against 18.0 ms (``bench/compress.py --quick``, docs/compression.md); on CPUs without AMX
    the direct kernel may win, so ``dlopt.compress`` times both and keeps the faster."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    inits = {t.name: t for t in proto.graph.initializer}
    moved = 0
    for node in proto.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        w, zp = inits.get(node.input[0]), inits.get(node.input[2])
        if w is None or zp is None or w.data_type != onnx.TensorProto.INT8:
            continue
        q, z = numpy_helper.to_array(w), numpy_helper.to_array(zp)
        step = -1 if q.min() > -128 else 1 if q.max() < 127 else 0
        if step == 0 or np.any(z != 0):
            continue
        w.CopyFrom(numpy_helper.from_array((q.astype(np.int16) + step).astype(np.int8), w.name))
        zp.CopyFrom(numpy_helper.from_array(np.full_like(z, step), zp.name))
        moved += 1
    onnx.save(proto, str(dst))
    return moved


# ORT's quantizers advise running its quant_pre_process on every call; a dlopt user cannot act
# on it (dlopt exports the graph and ORT shape-infers it on load)
_ORT_ADVICE = ("Please consider to run pre-processing before quantization",
               "Please consider pre-processing before quantization")
# per-channel axis 1 does not exist on a rank-1 weight (a LayerNorm/BatchNorm scale in ViT,
# msresnet's attention fuse): ORT quantizes that tensor per-tensor instead, nothing to act on
_RANK1_FALLBACK = re.compile(r"Axis -?\d+ is out-of-range for weight '.*' with rank 1$")


class _DropQuantizationNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith(_ORT_ADVICE) or _RANK1_FALLBACK.match(msg))


@contextlib.contextmanager
def quiet_quantization_notes() -> Iterator[None]:
    """While inside, drop ONNX Runtime quantization's pre-processing advice and rank-1
    per-channel fallback notes, nothing else: ORT logs them on the root logger (``logging.warning``)
    on every call and a dlopt user cannot act on them (dlopt owns the graph)."""
    root, drop = logging.getLogger(), _DropQuantizationNotes()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
