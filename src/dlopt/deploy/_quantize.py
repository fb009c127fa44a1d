"""A small static INT8 helper for benchmarking an ``--int8`` contestant.

Quantization proper (recipes, accuracy checks, per-layer choices) belongs to
``dlopt.compress``; this only turns an exported FP32 file into a calibrated QDQ INT8 file with
ONNX Runtime's tooling, keeping the dlopt metadata so the result serves like its source.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dlopt.errors import ConfigError, ModelError

__all__ = ["quantize_static_onnx", "shift_weight_zero_points", "quiet_quantization_notes", "CALIBRATIONS",
           "check_calibration"]

# ONNX Runtime's calibrators for INT8; its fourth, ``distribution``, fits float 8 (its docstring):
# on INT8 it gave a near-chance model here (MNIST-1D cnn1d, accuracy 0.904 -> 0.189)
CALIBRATIONS = ("minmax", "entropy", "percentile")


def check_calibration(method: str, *, key: str = "--calibration ") -> str:
    """ConfigError unless ``method`` is one of :data:`CALIBRATIONS`; returns it. ``key`` leads
    the error as the user wrote the option (``calibration=`` in a pipeline stage)."""
    if method not in CALIBRATIONS:
        why = " (ONNX Runtime's distribution calibrator is for float 8, not INT8)" if method == "distribution" else ""
        raise ConfigError(f"{key}{method!r} is invalid{why}; allowed: {', '.join(CALIBRATIONS)}")
    return method


def _even_batch(rows: int, batch: int) -> int:
    """The largest batch size up to ``batch`` that divides ``rows``. ORT's histogram calibrators
    (entropy, percentile) stack all batches' outputs into one array, which fails on a short last
    batch; equal batches keep every row (padding would weigh some twice, dropping lose some) and
    no inference runs on more than ``batch`` rows. A multiple of ``batch`` keeps ``batch`` (the
    same file as before); a prime count runs row by row."""
    return next(b for b in range(min(batch, rows), 0, -1) if rows % b == 0)


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
    (model inputs, float32, any number of rows) to ``dst``; dlopt metadata is carried over.
    ``calibrate_method``: one of :data:`CALIBRATIONS` (ONNX Runtime's INT8 calibrators; entropy and
    percentile take equal batches of at most ``batch`` rows). ``activation``: int8 | uint8
    activations (weights stay int8; U8S8 is the fast pair on x86 without AMX)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    from dlopt.deploy._runtime import OnnxModel

    source = OnnxModel.load(src)  # checks external-data paths before ORT's tools read it
    method = {m.name.lower(): m for m in CalibrationMethod}[check_calibration(calibrate_method)]
    act_types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    if activation not in act_types:
        raise ModelError(f"activation type {activation!r} is unknown; allowed: {', '.join(act_types)}")
    if len(calibration) == 0:
        raise ModelError("quantize_static_onnx: calibration needs at least one sample")
    if calibrate_method != "minmax":  # MinMax reduces each batch on its own: any last batch is fine
        batch = _even_batch(len(calibration), batch)
    reader = _Reader(source.input_name, np.asarray(calibration), batch)
    CalibrationDataReader.register(_Reader)
    out = Path(dst)
    with tempfile.TemporaryDirectory(prefix="dlopt-quant-") as tmp:
        staged = Path(tmp) / out.name
        with quiet_quantization_notes():
            quantize_static(str(src), str(staged), reader, quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=act_types[activation],
                            weight_type=QuantType.QInt8, calibrate_method=method)
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


# ORT's histogram calibrators (entropy, percentile) print() their progress to stdout on every
# call; a dlopt command's stdout is its own report (and --json output), so these lines go
_CALIBRATOR_PROGRESS = re.compile(r"Collecting tensor data and making histogram|Finding optimal threshold for "
                                  r"each tensor|Number of (tensors|histogram bins|quantized bins) :|Percentile : \(")


@contextlib.contextmanager
def quiet_quantization_notes() -> Iterator[None]:
    """While inside, drop ONNX Runtime quantization's pre-processing advice and rank-1
    per-channel fallback notes, nothing else: ORT logs them on the root logger (``logging.warning``)
    on every call and a dlopt user cannot act on them (dlopt owns the graph). Its calibrators'
    progress lines on stdout are dropped too; any other stdout text is passed on after the block."""
    root, drop = logging.getLogger(), _DropQuantizationNotes()
    root.addFilter(drop)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        root.removeFilter(drop)
        kept = [line for line in printed.getvalue().splitlines(keepends=True)
                if not _CALIBRATOR_PROGRESS.match(line)]
        sys.stdout.write("".join(kept))
