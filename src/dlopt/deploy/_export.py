"""``export_onnx``: PyTorch -> one self-contained ONNX file, written only if it passes parity.

Steps: export into a private temporary folder beside the target, embed the metadata, load the
result through :class:`OnnxModel` (the same safe loader serving uses), compare ONNX Runtime
with PyTorch on >= 256 samples, then move the file into place. A failed check leaves no model
file behind, only ``<stem>.parity-failure.npz`` with the failing inputs and both outputs.

Exporters are a registry. ``dynamo`` (torch.export based, PyTorch's supported path) is the
default: it exported every zoo model with parity ~1e-6 here. ``legacy`` (TorchScript,
deprecated) exports 5-20x faster and is kept as a fallback for models torch.export rejects.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from dlopt.deploy._metadata import ModelMetadata
from dlopt.deploy._runtime import OnnxModel
from dlopt.errors import ModelError
from dlopt.registry import Registry

__all__ = ["EXPORTERS", "ExportReport", "ParityError", "export_onnx", "parity_check"]

log = logging.getLogger(__name__)

INPUT_NAME = "x"
OUTPUT_NAME = "logits"
MIN_SAMPLES = 256
# above this many parameter bytes the weights go to a side file (protobuf's 2 GiB limit)
_EXTERNAL_DATA_BYTES = 1_800_000_000

EXPORTERS: Registry[Callable[..., None]] = Registry("onnx exporter", ModelError)


class ParityError(ModelError):
    """ONNX Runtime disagrees with PyTorch; ``failure_path`` holds the failing inputs."""

    def __init__(self, message: str, failure_path: Path) -> None:
        super().__init__(message)
        self.failure_path = failure_path


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how it checked it."""

    path: Path
    exporter: str
    size_bytes: int
    samples: int
    random_samples: int
    max_abs_diff: float
    top1_agreement: float | None
    atol: float
    seconds: float
    external_data: bool
    metadata: ModelMetadata

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (metadata summarized)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "metadata"}
        out["path"] = str(self.path)
        out["metadata"] = self.metadata.public()
        return out


# ------------------------------------------------------------------------------ exporters
@EXPORTERS.register("dynamo")
def _export_dynamo(model: Any, sample: Any, path: Path, *, external_data: bool,
                   translations: Mapping[Any, Any] | None, opset: int | None) -> None:
    from torch.export import Dim

    import torch

    torch.onnx.export(
        model, (sample,), str(path), dynamo=True, verbose=False, report=False,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        # positional: zoo models name their argument x, nn.Sequential calls it input
        dynamic_shapes=({0: Dim("batch")},),
        external_data=external_data, custom_translation_table=dict(translations or {}),
        opset_version=opset,
    )


@EXPORTERS.register("legacy")
def _export_legacy(model: Any, sample: Any, path: Path, *, external_data: bool,
                   translations: Mapping[Any, Any] | None, opset: int | None) -> None:
    import torch

    if translations:
        raise ModelError("exporter 'legacy' does not take translations; use exporter='dynamo'")
    torch.onnx.export(
        model, (sample,), str(path), dynamo=False, verbose=False,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        opset_version=opset or 18,
    )


# operator names as the exporters print them
_OP_PATTERNS = (
    re.compile(r"OpOverload\(op='([\w.]+)'"),
    re.compile(r"target=(?:torch\.ops\.)?([\w]+\.[\w.]+)"),
    re.compile(r"operator '?([\w]+::[\w.]+)"),
    re.compile(r"namespace ([\w]+::[\w.]+)"),
    re.compile(r"\b(aten::[\w.]+|[\w]+::[\w.]+)"),
)


def _op_name(exc: BaseException) -> str | None:
    """The unsupported operator an exporter error talks about, if any."""
    chain, seen = [exc], set()
    while chain:
        e = chain.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        for pattern in _OP_PATTERNS:
            m = pattern.search(str(e))
            if m:
                return m.group(1)
        chain += [c for c in (e.__cause__, e.__context__) if c is not None]
    return None


def _run_exporter(name: str, model: Any, sample: Any, path: Path, **kw: Any) -> None:
    exporter = EXPORTERS.get(name).factory
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation chatter of torch internals
            _quiet(exporter, model, sample, path, **kw)
    except ModelError:
        raise
    except Exception as exc:  # torch raises many unrelated types here
        op = _op_name(exc)
        what = f"operator {op!r} has no ONNX conversion" if op else _first_line(exc)
        hint = "; try exporter='legacy'" if name == "dynamo" else ""
        raise ModelError(
            f"cannot export {type(model).__name__} with exporter {name!r}: {what}{hint}"
        ) from exc


# torch's exporter logs a warning per missing torchvision op on every export
_NOISY_LOGGERS = ("torch.onnx._internal.exporter._registration",)


def _quiet(fn: Callable[..., None], *args: Any, **kw: Any) -> None:
    # the dynamo exporter prints progress lines to stdout; library code must not print
    import contextlib
    import io

    loggers = [logging.getLogger(n) for n in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()):
            fn(*args, **kw)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# --------------------------------------------------------------------------------- parity
@dataclass(frozen=True)
class _Parity:
    max_abs_diff: float
    top1_agreement: float | None
    bad_rows: np.ndarray
    reference: np.ndarray
    onnx: np.ndarray


def _torch_outputs(model: Any, x: np.ndarray, batch: int = 64) -> np.ndarray:
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(x[i:i + batch])).float().cpu().numpy())
    return np.concatenate(outs)


def _onnx_outputs(runner: OnnxModel, x: np.ndarray, batch: int = 64) -> np.ndarray:
    # batch 1 first, then full chunks: exercises the dynamic batch axis at several sizes
    return runner.run_batches([x[:1], *(x[i:i + batch] for i in range(1, len(x), batch))])


def parity_check(model: Any, runner: OnnxModel, x: np.ndarray, *, atol: float) -> _Parity:
    """Compare PyTorch and ONNX Runtime on ``x``: max |diff| and top-1 agreement."""
    ref = _torch_outputs(model, x).reshape(len(x), -1)
    got = _onnx_outputs(runner, x).reshape(len(x), -1)
    if ref.shape != got.shape:
        raise ModelError(f"parity check: ONNX output shape {got.shape} differs from PyTorch {ref.shape}")
    diff = np.abs(ref.astype(np.float64) - got)
    diff = np.where(np.isnan(ref) & np.isnan(got), 0.0, diff)
    row_diff = np.nan_to_num(diff, nan=np.inf).max(axis=1)
    bad = row_diff > atol
    agreement = None
    if ref.shape[1] > 1:
        same = ref.argmax(axis=1) == got.argmax(axis=1)
        agreement = float(same.mean())
        bad |= ~same
    return _Parity(float(row_diff.max()), agreement, np.flatnonzero(bad), ref, got)


def _check_inputs(check_inputs: Any, sample: Any, samples: int, seed: int) -> tuple[np.ndarray, int]:
    """At least ``samples`` float32 rows: the given ones, topped up with random ones."""
    shape = tuple(sample.shape[1:])
    x = (np.empty((0, *shape), np.float32) if check_inputs is None
         else np.asarray(check_inputs.detach().cpu() if hasattr(check_inputs, "detach") else check_inputs,
                         dtype=np.float32))
    if x.shape[1:] != shape:
        raise ModelError(f"check_inputs shape {x.shape} does not match the sample's (N, {shape})")
    missing = max(samples - len(x), 0)
    if missing:
        rng = np.random.default_rng(seed)
        # random rows at the scale of the real ones keep the comparison meaningful
        mean, std = (float(x.mean()), float(x.std()) or 1.0) if len(x) else (0.0, 1.0)
        x = np.concatenate([x, rng.normal(mean, std, (missing, *shape)).astype(np.float32)])
    return np.ascontiguousarray(x), missing


def _save_failure(path: Path, x: np.ndarray, parity: _Parity) -> Path:
    target = path.with_name(f"{path.stem}.parity-failure.npz")
    rows = parity.bad_rows
    np.savez_compressed(target, inputs=x[rows], indices=rows,
                        torch_outputs=parity.reference[rows], onnx_outputs=parity.onnx[rows])
    return target


# ------------------------------------------------------------------------------- metadata
def _embed_metadata(path: Path, meta: ModelMetadata) -> None:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    del proto.metadata_props[:]
    for key, value in meta.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def _param_bytes(model: Any) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def _fill_summary(meta: ModelMetadata, model: Any, shape: tuple[int, ...]) -> ModelMetadata:
    if meta.params is not None and meta.macs is not None:
        return meta
    from dlopt.models import summary

    try:
        s = summary(model, shape)
    except ModelError:
        return meta
    return meta.replace(params=meta.params if meta.params is not None else s.params,
                        macs=meta.macs if meta.macs is not None else s.macs)


# ----------------------------------------------------------------------------------- main
def export_onnx(
    model: Any,
    sample: Any,
    path: str | os.PathLike,
    *,
    metadata: Mapping[str, Any] | None = None,
    check_inputs: Any = None,
    exporter: str = "dynamo",
    atol: float = 1e-4,
    min_top1: float = 0.995,
    samples: int = MIN_SAMPLES,
    translations: Mapping[Any, Any] | None = None,
    opset: int | None = None,
    seed: int = 0,
) -> ExportReport:
    """Export ``model`` to ``path`` as ONNX with a dynamic batch axis, after a parity check.

    ``sample`` is an example batch ``(B, *input_shape)``; ``check_inputs`` are real inputs for
    the check (topped up with random rows to ``samples``). ``metadata`` keys: see
    :class:`ModelMetadata` (task, class_names, preprocess, source_run, model, dataset, ...).
    ``translations`` maps custom torch ops to onnxscript functions (dynamo exporter).
    Raises :class:`ParityError` when max |diff| > ``atol`` or top-1 agreement < ``min_top1``.
    """
    import torch

    start = time.perf_counter()
    target = Path(path)
    EXPORTERS.get(exporter)
    if not (math.isfinite(atol) and atol >= 0) or not 0 <= min_top1 <= 1:
        # NaN would pass every comparison and switch the parity check off
        raise ModelError(f"export: atol={atol} and min_top1={min_top1}; allowed: a finite atol >= 0, "
                         "min_top1 in [0, 1]")
    if not target.parent.is_dir():
        raise ModelError(f"export: output folder {target.parent} does not exist")
    if target.name in ("", ".", "..") or (target.exists() and not target.is_file()):
        # the file is put in place by a rename: it would replace a device or a FIFO
        raise ModelError(f"export: output {str(path)!r} is not a file path (a directory, a device "
                         f"or another special file); give a .onnx file path")
    sample = torch.as_tensor(sample, dtype=torch.float32).detach().cpu()
    if sample.dim() < 2:
        raise ModelError(f"export: sample shape {tuple(sample.shape)} needs a batch axis: (B, *input_shape)")
    if sample.shape[0] < 2:  # torch.export specializes a batch of 1 to a constant
        sample = sample.expand(2, *sample.shape[1:]).contiguous()
    shape = tuple(int(d) for d in sample.shape[1:])
    meta = ModelMetadata.from_user(metadata or {}, input_shape=shape).replace(exporter=exporter)
    x, random_rows = _check_inputs(check_inputs, sample, samples, seed)

    try:
        tmp = Path(tempfile.mkdtemp(prefix=".dlopt-export-", dir=target.parent))
    except OSError as exc:
        raise ModelError(f"export: cannot write in {target.parent}: {exc.strerror or exc}") from None
    was_training = model.training
    model.eval()
    try:
        meta = _fill_summary(meta, model, shape)
        external = _param_bytes(model) > _EXTERNAL_DATA_BYTES
        staged = tmp / target.name
        _run_exporter(exporter, model, sample, staged, external_data=external,
                      translations=translations, opset=opset)
        _embed_metadata(staged, meta)  # before the check: it loads through the same reader
        parity = parity_check(model, OnnxModel.load(staged), x, atol=atol)
        log.info("parity: max |diff| %.3g, top-1 agreement %s", parity.max_abs_diff, parity.top1_agreement)
        failed = parity.max_abs_diff > atol or (
            parity.top1_agreement is not None and parity.top1_agreement < min_top1)
        if failed:
            saved = _save_failure(target, x, parity)
            agree = "n/a" if parity.top1_agreement is None else f"{parity.top1_agreement:.2%}"
            raise ParityError(
                f"export refused: ONNX Runtime differs from PyTorch on {len(parity.bad_rows)}/{len(x)} "
                f"samples (max |diff| {parity.max_abs_diff:.3g} > atol {atol:g} or top-1 agreement "
                f"{agree} < {min_top1:.1%}); failing inputs saved to {saved}",
                saved,
            )
        meta = meta.replace(parity={
            "samples": len(x), "random_samples": random_rows, "atol": atol,
            "max_abs_diff": parity.max_abs_diff, "top1_agreement": parity.top1_agreement,
        })
        _embed_metadata(staged, meta)
        for f in sorted(tmp.iterdir()):  # the model and, for huge models, its .data file
            os.replace(f, target.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        model.train(was_training)
    return ExportReport(
        path=target, exporter=exporter, size_bytes=target.stat().st_size, samples=len(x),
        random_samples=random_rows, max_abs_diff=parity.max_abs_diff,
        top1_agreement=parity.top1_agreement, atol=atol,
        seconds=time.perf_counter() - start, external_data=external, metadata=meta,
    )
