"""Quantization: INT8 post-training via ONNX Runtime (static QDQ or dynamic), quantization-aware
training with PACT (``qat``), and binary/ternary research modes (``binary``, ``ternary``).

    res = quantize_run("runs/resnet", "runs/resnet-int8", method="static", calibration="minmax")
    res = quantize_run("model.onnx", "runs/int8", method="auto")

``auto`` picks static for graphs with convolutions and dynamic for Linear/RNN-only graphs:
measured here, dynamic INT8 (ConvInteger) is 4-12x *slower* than FP32 on conv nets. Every
INT8 file is timed against its FP32 source on ONNX Runtime; one that is slower is rejected
and the FP32 model kept (small nets such as LeNet-5 gain nothing from INT8 here).

A static INT8 file can run its convolutions through two ONNX Runtime kernels that give the
same outputs bit for bit (:func:`pick_conv_kernel`): ``direct`` (symmetric weights, the VNNI
direct convolution) and ``gemm`` (weight zero points moved off 0: im2col + QGEMM, which uses
AMX where the CPU has it). ``conv_kernel="auto"`` times both on the serving thread count and
keeps the faster, so the choice follows the machine rather than a guess.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dlopt.compress import _rundir as rd
from dlopt.compress._types import Budget, CompressResult, MeasureSettings, check_latency_measured
from dlopt.compress.guard import budget_record, judge, slower_flags
from dlopt.compress.measure import measure_onnx, measure_torch, onnx_size_reduction
from dlopt.deploy import CALIBRATIONS, check_calibration
from dlopt.errors import ConfigError, DataError, ModelError, first_line
from dlopt.registry import Registry

__all__ = ["QUANT_METHODS", "quantize_run", "quantize_onnx", "check_quantizable", "CALIBRATIONS", "CONV_KERNELS",
           "pick_conv_kernel"]

log = logging.getLogger(__name__)

QUANT_METHODS: Registry[Any] = Registry("quantization method", ConfigError)
CONV_KERNELS = ("auto", "direct", "gemm")

# operator domains ONNX Runtime's quantizer and CPU kernels understand
_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
_QUANTIZABLE = {"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "Attention"}
_CONV = {"Conv", "ConvTranspose"}


def check_quantizable(path: Path) -> bool:
    """ModelError unless ONNX Runtime can quantize ``path``; True when it has convolutions."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # protobuf raises its own DecodeError type
        raise ModelError(f"{path} is not a valid ONNX file ({type(exc).__name__})") from None
    ops = {(n.domain, n.op_type) for n in graph.node}
    custom = sorted(f"{d}.{t}" for d, t in ops if d not in _DOMAINS)
    if custom:
        raise ModelError(f"{path}: operator {custom[0]!r} is not supported by ONNX Runtime quantization; "
                         f"allowed domains: ai.onnx, ai.onnx.ml, com.microsoft")
    types = {t for _, t in ops}
    if not types & _QUANTIZABLE:
        raise ModelError(f"{path}: nothing to quantize (no {', '.join(sorted(_QUANTIZABLE))} operator)")
    return bool(types & _CONV)


def _copy_metadata(src: Path, dst: Path) -> None:
    import onnx

    proto = onnx.load(str(dst))
    del proto.metadata_props[:]
    for e in onnx.load(str(src), load_external_data=False).metadata_props:
        proto.metadata_props.add(key=e.key, value=e.value)
    onnx.save(proto, str(dst))


@QUANT_METHODS.register("static", kind="ptq", help="INT8 QDQ, per-channel weights, calibrated activations")
def _static(src: Path, dst: Path, *, calibration: np.ndarray, calibrate_method: str, per_channel: bool) -> Path:
    from dlopt.deploy import quantize_static_onnx

    # uint8 activations: measured here (Xeon, AVX-512 VNNI) U8S8 ResNet-8 bs64 ran 1.7x faster
    # than ORT FP32, while S8S8 ran 1.6x slower (ORT's notes are dropped inside deploy)
    return quantize_static_onnx(src, dst, calibration, per_channel=per_channel,
                                calibrate_method=calibrate_method, activation="uint8")


@QUANT_METHODS.register("dynamic", kind="ptq", help="INT8 weights, activations quantized at run time (Linear/RNN)")
def _dynamic(src: Path, dst: Path, *, calibration: np.ndarray, calibrate_method: str, per_channel: bool) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from dlopt.deploy import quiet_quantization_notes

    # activation ranges come from each whole batch at run time (DynamicQuantizeLinear)
    log.warning("dynamic INT8: a row's answer depends on the batch it is sent in; static INT8 does not")
    with quiet_quantization_notes():
        quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8)
    _copy_metadata(src, dst)
    return dst


def _auto_method(src: Path) -> str:
    """What ``auto`` picks for an FP32 ONNX file: static where ORT has INT8 kernels for it."""
    return "static" if check_quantizable(src) else "dynamic"


@QUANT_METHODS.register("auto", kind="ptq", help="static for conv nets, dynamic for Linear/RNN-only graphs")
def _auto(src: Path, dst: Path, **kw: Any) -> Path:
    method = _auto_method(src)
    log.info("auto quantization: %s", method)
    return QUANT_METHODS.create(method, src=src, dst=dst, **kw)


@QUANT_METHODS.register("qat", kind="train", help="fake-quant INT8 training with PACT clipping, then static INT8")
def _qat() -> Callable[..., Any]:
    from dlopt.compress.qat import qat_candidate

    return qat_candidate


@QUANT_METHODS.register("binary", kind="lowbit", help="1-bit weights (sign x mean|w|), research mode")
def _binary() -> Callable[..., Any]:
    from dlopt.compress.lowbit import lowbit_candidate

    return lowbit_candidate


@QUANT_METHODS.register("ternary", kind="lowbit", help="ternary weights {-a, 0, +a}, research mode")
def _ternary() -> Callable[..., Any]:
    from dlopt.compress.lowbit import lowbit_candidate

    return lowbit_candidate


def quantize_onnx(src: str | Path, dst: str | Path, *, method: str = "auto", calibration: np.ndarray | None = None,
                  calibrate_method: str = "minmax", per_channel: bool = True) -> Path:
    """INT8 copy of an FP32 ONNX file (``static``, ``dynamic`` or ``auto``), metadata kept."""
    entry = QUANT_METHODS.get(method)
    if entry.info["kind"] != "ptq":
        raise ConfigError(f"quantize_onnx: method {method!r} needs a training run; allowed on .onnx: auto, dynamic, static")
    check_calibration(calibrate_method)
    src, dst = Path(src), Path(dst)
    check_quantizable(src)
    calib = np.zeros((0,), np.float32) if calibration is None else np.asarray(calibration, np.float32)
    if method != "dynamic" and len(calib) == 0 and (method == "static" or check_quantizable(src)):
        raise ConfigError("static quantization needs calibration samples (calib_samples >= 1)")
    return entry.factory(src=src, dst=dst, calibration=calib, calibrate_method=calibrate_method,
                         per_channel=per_channel)


def _precision(method: str, fp32_onnx: Path) -> str:
    """What a quantized model holds, for its summary's ``precision`` (a training run's says
    what it trained in): ``int8 (static)``, ``int8 (dynamic)``, ``int8 (qat)``, ``binary``..."""
    if method == "auto":
        method = _auto_method(fp32_onnx)
    return f"int8 ({method})" if method in ("static", "dynamic", "qat") else method


def _check_conv_kernel(conv_kernel: str) -> str:
    """ConfigError unless ``conv_kernel`` is one of :data:`CONV_KERNELS`."""
    if conv_kernel not in CONV_KERNELS:
        raise ConfigError(f"--conv-kernel {conv_kernel!r} is invalid; allowed: {', '.join(CONV_KERNELS)}")
    return conv_kernel


def pick_conv_kernel(int8: str | Path, sample: np.ndarray, *, conv_kernel: str = "auto", threads: int = 1,
                     batch: int = 64, rounds: int = 3) -> dict[str, Any]:
    """Settle which ONNX Runtime kernel the static INT8 file ``int8`` runs its convolutions
    with, rewriting it in place for ``gemm`` (weight zero points moved by
    ``dlopt.deploy.shift_weight_zero_points``; outputs unchanged bit for bit). ``auto`` times
    both files with the deploy room's ``benchmark`` (batch ``batch`` from ``sample``,
    ``threads`` threads, ``rounds`` interleaved rounds of fresh workers) and keeps the faster.
    Returns ``{"conv_kernel", "p50_ms"}`` (timings only for ``auto``; ``conv_kernel`` is
    ``direct`` when the file has no symmetric int8 weight)."""
    from dlopt.deploy import Contestant, benchmark, shift_weight_zero_points

    _check_conv_kernel(conv_kernel)
    int8 = Path(int8)
    if conv_kernel == "direct":
        return {"conv_kernel": "direct", "p50_ms": {}}
    twin = int8.with_name(f"{int8.stem}.gemm.onnx")
    if shift_weight_zero_points(int8, twin) == 0:
        twin.unlink()
        return {"conv_kernel": "direct", "p50_ms": {}}
    times: dict[str, float] = {}
    if conv_kernel == "auto":
        rep = benchmark([Contestant(name, "onnxruntime", {"onnx": str(path.resolve())})
                         for name, path in (("direct", int8), ("gemm", twin))],
                        sample, batch_sizes=(batch,), threads=threads, min_runs=10, min_seconds=0.2,
                        rounds=rounds)
        times = {name: e[str(batch)]["p50_ms"] for name, e in rep["contestants"].items()}
        if times["gemm"] >= times["direct"]:
            twin.unlink()
            return {"conv_kernel": "direct", "p50_ms": times}
    twin.replace(int8)
    return {"conv_kernel": "gemm", "p50_ms": times}


def _int8_onnx(src: Path, dst: Path, *, method: str, calibration: np.ndarray, calibrate_method: str,
               per_channel: bool, conv_kernel: str, measure: MeasureSettings) -> dict[str, Any]:
    """:func:`quantize_onnx` then :func:`pick_conv_kernel` at the measure batch and threads;
    returns the kernel record for the summary."""
    quantize_onnx(src, dst, method=method, calibration=calibration, calibrate_method=calibrate_method,
                  per_channel=per_channel)
    return pick_conv_kernel(dst, calibration, conv_kernel=conv_kernel, threads=measure.threads,
                            batch=measure.latency_batch)


def _onnx_bundle(path: Path, data: str | dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """The data an exported file is calibrated and judged on (:func:`_data_config`) and the
    guard's split record (a held-out part of train when the run had no validation split).
    Data of another input shape than the file's is refused: nothing could be calibrated or judged."""
    from dlopt.compress._holdout import with_guard_split
    from dlopt.data import load_data
    from dlopt.deploy import OnnxModel

    meta = OnnxModel.load(path).metadata
    cfg = _data_config(path, meta.dataset, data)
    where = "--data" if data is not None else "its metadata"
    try:
        bundle = load_data(cfg)
    except DataError as exc:  # e.g. a csv: path relative to where the run was trained
        if data is not None:
            raise
        raise DataError(f"{path}: dataset {cfg.name!r} named by its metadata cannot be read here ({first_line(exc)}); "
                        f"allowed: --data NAME naming the data the model was trained on") from None
    shape = tuple(bundle.info.input_shape)
    if shape != tuple(meta.input_shape):
        raise ConfigError(f"{path} takes inputs of shape {tuple(meta.input_shape)} but dataset {cfg.name!r} (named "
                          f"by {where}) gives {shape}, so nothing can be calibrated or judged on it; allowed: "
                          f"--data NAME naming the data the model was trained on (e.g. npz:FILE or csv:FILE)")
    return with_guard_split(bundle, seed=cfg.seed)


def _data_config(path: Path, dataset: dict[str, Any], data: str | dict[str, Any] | None) -> Any:
    """``data`` (a dataset name or data config mapping), else the file's metadata ``dataset``
    (its training run's data config), validated."""
    from dlopt.config import DataConfig, parse_config

    named = dataset if data is None else {"name": data} if isinstance(data, str) else dict(data)
    if not named:
        raise ConfigError(f"{path}: its metadata names no dataset; allowed: --data NAME (the data it was trained "
                          f"on, e.g. npz:FILE or csv:FILE), or quantize the run directory instead")
    return parse_config(named, DataConfig)


def _calibration(bundle: Any, samples: int, seed: int = 0) -> np.ndarray:
    """``samples`` training inputs (seeded draw), all of them when train has fewer: calibration
    never sees the test split. The summary records ``len()`` of the result, the number used."""
    import torch

    idx = np.random.default_rng(seed).permutation(len(bundle.train))[:samples]
    if len(idx) < samples:
        log.warning("--calib-samples %d: the training split has %d rows; calibrating on all of them",
                    samples, len(idx))
    return bundle.train.rows(torch.from_numpy(np.sort(idx))).numpy()  # a held split stays uint8


def quantize_run(src: str | Path, out_dir: str | Path, *, method: str = "auto", calibration: str = "minmax",
                 calib_samples: int = 512, per_channel: bool = True, epochs: int = 1, lr: float = 1e-4,
                 conv_kernel: str = "auto", budget: Budget | None = None, measure: MeasureSettings | None = None,
                 overwrite: bool = False, data: str | dict[str, Any] | None = None) -> CompressResult:
    """Quantize a run (or an exported ``.onnx``) into ``out_dir``: ``model.int8.onnx`` beside
    the FP32 ``model.onnx``; guarded on the validation metric (accuracy or R2) and ONNX Runtime latency.
    ``conv_kernel`` (auto | direct | gemm): see :func:`pick_conv_kernel` (static INT8 and qat).
    ``data`` (an ``.onnx`` source only): the dataset name or data config mapping to calibrate and
    judge on, instead of the one the file's metadata names."""
    entry = QUANT_METHODS.get(method)
    check_calibration(calibration)
    if calib_samples < 1:
        raise ConfigError(f"--calib-samples={calib_samples} is invalid; allowed: an integer >= 1")
    if epochs < 1:
        raise ConfigError(f"--epochs={epochs} is invalid; allowed: an integer >= 1")
    if not lr > 0:  # checked here, not by the training config after the source was exported
        raise ConfigError(f"--lr={lr} is invalid; allowed: a number > 0")
    _check_conv_kernel(conv_kernel)
    budget, measure = budget or Budget(), measure or MeasureSettings()
    check_latency_measured(budget, measure)
    p = Path(src)
    if not p.exists():
        raise ConfigError(f"run or ONNX file not found: {p}")
    if p.suffix == ".onnx":
        if entry.info["kind"] != "ptq":
            raise ConfigError(f"method {method!r} trains the model: give a run directory, not {p.name}")
        return _quantize_file(p, Path(out_dir), method=method, calibration=calibration, calib_samples=calib_samples,
                              per_channel=per_channel, conv_kernel=conv_kernel, budget=budget, measure=measure,
                              overwrite=overwrite, data=data)
    if data is not None:
        raise ConfigError(f"--data is for an .onnx source; {p} is a run directory, quantized on its own data "
                          f"(allowed: drop --data)")
    with rd.step_out(out_dir, overwrite=overwrite, inputs=[p]) as out:
        source = rd.open_source(p)
        if entry.info["kind"] == "lowbit":
            from dlopt.compress.lowbit import check_lowbit

            check_lowbit(source.model, source.config.model.name, method)
        work = rd.work_dir(out)
        source_onnx = work / "source.onnx"
        before = measure_torch(source.model, source.bundle, source_onnx, measure=measure, metadata=source.metadata())
        cand = out / rd.CANDIDATE
        kind = entry.info["kind"]
        calib = _calibration(source.bundle, calib_samples)
        if kind == "ptq":
            # the FP32 weights and config reload the model; finalize puts the INT8 file's figures
            # (compression.after) into its summary, not these FP32 ones
            rd.write_model_dir(cand, source, source.model, name=out.name)
            shutil.copy2(source_onnx, cand / rd.ONNX)
            extra: dict[str, Any] = _int8_onnx(source_onnx, cand / rd.INT8_ONNX, method=method, calibration=calib,
                                               calibrate_method=calibration, per_channel=per_channel,
                                               conv_kernel=conv_kernel, measure=measure)
            after = measure_onnx(cand / rd.INT8_ONNX, source.bundle, measure=measure)
        else:
            build = entry.factory()
            after, extra = build(source, cand, method=method, epochs=epochs, lr=lr, measure=measure,
                                 calibration=calib, calibrate_method=calibration,
                                 conv_kernel=conv_kernel)
        # low-bit weights have no fast runtime: judge accuracy only, report size honestly
        no_slower = kind != "lowbit" and measure.latency
        accepted, reason = judge(before, after, budget, latency_batch=measure.latency_batch, no_slower=no_slower)
        compression = {"step": "quantize", "method": method, "kind": kind,
                       "options": {"calibration": calibration, "calib_samples": len(calib),
                                   "per_channel": per_channel, "epochs": epochs, "lr": lr, "conv_kernel": conv_kernel},
                       "budget": budget_record(budget, after["metric"]),
                       "before": before, "after": after, **onnx_size_reduction(before, after),
                       **slower_flags(before, after), **extra}
        summary = rd.finalize(out, source.run_dir, accepted=accepted, reason=reason, compression=compression,
                              source_onnx=source_onnx, guard_split=source.guard_split,
                              precision=_precision(method, source_onnx))
        return CompressResult(run_dir=out, accepted=accepted, reason=reason, summary=summary, before=before,
                              after=after)


def _quantize_file(src: Path, out_dir: Path, *, method: str, calibration: str, calib_samples: int,
                   per_channel: bool, conv_kernel: str, budget: Budget, measure: MeasureSettings,
                   overwrite: bool, data: str | dict[str, Any] | None) -> CompressResult:
    """An exported FP32 file in, ``model.onnx`` + ``model.int8.onnx`` + ``summary.json`` out."""
    from dlopt.train import rundir

    check_quantizable(src)
    bundle, guard_split = _onnx_bundle(src, data)
    with rd.step_out(out_dir, overwrite=overwrite, inputs=[src]) as out:
        shutil.copy2(src, out / rd.ONNX)
        before = measure_onnx(out / rd.ONNX, bundle, measure=measure)
        int8 = out / rd.INT8_ONNX
        calib = _calibration(bundle, calib_samples)
        kernel = _int8_onnx(out / rd.ONNX, int8, method=method, calibration=calib, calibrate_method=calibration,
                            per_channel=per_channel, conv_kernel=conv_kernel, measure=measure)
        after = measure_onnx(int8, bundle, measure=measure)
        accepted, reason = judge(before, after, budget, latency_batch=measure.latency_batch, no_slower=measure.latency)
        if not accepted:  # the candidate goes to DIR/rejected/, as for run directories
            (out / rd.REJECTED).mkdir()
            int8.rename(out / rd.REJECTED / rd.INT8_ONNX)
        summary = {"schema_version": rundir.SCHEMA_VERSION, "name": out.name, "task": bundle.info.task,
                   "dataset": bundle.info.name, "precision": _precision(method, src) if accepted else "fp32",
                   "accepted": accepted, "reason": reason,
                   "compression": {"step": "quantize", "method": method, "kind": "ptq", "source": str(src.resolve()),
                                   "options": {"calibration": calibration, "calib_samples": len(calib),
                                               "per_channel": per_channel, "conv_kernel": conv_kernel},
                                   "budget": budget_record(budget, after["metric"]),
                                   "before": before, "after": after, **onnx_size_reduction(before, after),
                                   **slower_flags(before, after), **kernel,
                                   "guard_split": guard_split}}
        rundir.write_json(out / rundir.SUMMARY, summary)
        return CompressResult(run_dir=out, accepted=accepted, reason=reason, summary=summary, before=before,
                              after=after)
