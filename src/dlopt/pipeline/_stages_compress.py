"""Compression stages: ``prune``, ``distill``, ``quantize`` (through ``dlopt.compress``).

Each writes a run directory ``<stage>/run`` following the compression room's contract
(docs/compression.md): the best model so far, ``summary.json`` with ``accepted``, ``reason``
and ``compression.before/after``. A step the guard rejects still completes: its output is
the input model and the report says why.
"""

from __future__ import annotations

import importlib
import logging
import shlex
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field

from dlopt.config import parse_config
from dlopt.errors import ConfigError, RunError
from dlopt.pipeline._context import STAGES, Options, StageContext, StageOutput, deep_merge
from dlopt.pipeline._stages_train import run_metrics

log = logging.getLogger(__name__)


def _compress(name: str) -> Callable[..., Any]:
    """A function of ``dlopt.compress``; a clear RunError while that room lacks it."""
    try:
        return getattr(importlib.import_module("dlopt.compress"), name)
    except (ImportError, AttributeError):
        raise RunError(f"stage needs dlopt.compress.{name}, which is not available yet in this build") from None


def _settings(opts: Any) -> dict[str, Any]:
    from dlopt.compress._types import Budget, MeasureSettings

    return {"budget": Budget(max_drop_pt=opts.max_drop_pt),
            "measure": MeasureSettings(latency=opts.measure_latency)}


def _command(verb: str, args: list[Any], opts: Any) -> str:
    """The ``dlopt prune/distill/quantize`` line that redoes the step, guard included."""
    guard = ["--max-drop-pt", f"{opts.max_drop_pt:g}", *([] if opts.measure_latency else ["--no-latency"])]
    return shlex.join(["dlopt", verb, *map(str, args), *guard, "--overwrite"])


# figures a stage record leaves to the run's own files (timings; summary.json's matrix)
_RUN_ONLY = ("latency_ms", "confusion_matrix")


def _reason(result: Any, opts: Any) -> str:
    """The guard's reason; without ``measure_latency`` the step ran with ``--no-latency``, and
    "within budget" alone would read as if latency had been checked too."""
    if opts.measure_latency or not result.reason:
        return result.reason
    return f"{result.reason}; latency not checked (measure_latency: false)"


def _output(result: Any, out: Path, stage_dir: Path, command: str, opts: Any) -> StageOutput:
    """Metrics of the step's kept model plus the guard's decision and before/after figures."""
    metrics, timings = run_metrics(out) if (out / "summary.json").exists() else ({}, {})
    comp = result.summary.get("compression", {})
    kept = result.after if result.accepted else result.before
    for key in ("params", "macs", "size_bytes", "sparsity"):
        if kept.get(key) is not None:
            metrics[key] = kept[key]
    if kept.get("test_accuracy") is not None:
        metrics["accuracy"] = kept["test_accuracy"]
    metrics.update(accepted=result.accepted, reason=_reason(result, opts),
                   before={k: v for k, v in result.before.items() if k not in _RUN_ONLY},
                   after={k: v for k, v in result.after.items() if k not in _RUN_ONLY},
                   method=comp.get("method"))
    timings["latency_ms_before"] = result.before.get("latency_ms")
    timings["latency_ms_after"] = result.after.get("latency_ms")
    artifacts = {"run": str(out.relative_to(stage_dir))}
    for name in ("model.int8.onnx", "model.onnx"):
        if (out / name).exists():
            artifacts["onnx"] = str((out / name).relative_to(stage_dir))
            break
    return StageOutput(metrics, timings, artifacts, [command])


class _CompressOptions(Options):
    max_drop_pt: float = Field(0.5, ge=0)
    measure_latency: bool = Field(False, description="time each step (the bench stage times them anyway)")


# --------------------------------------------------------------------------------- prune
class PruneOptions(_CompressOptions):
    """``dlopt.compress.prune_run`` options."""

    method: str = "l1"
    target: str = "macs=0.5"
    steps: int = Field(1, ge=1)
    finetune_epochs: int = Field(1, ge=0)
    round_to: int | None = Field(8, ge=1)
    lr: float | None = Field(None, gt=0)  # None: the input run's own learning rate


def _check_prune(pipeline: Any, opts: PruneOptions) -> None:
    try:
        from dlopt.compress.prune import PRUNE_METHODS
        from dlopt.compress._types import parse_target
    except ImportError:
        return  # the stage itself reports the missing room
    PRUNE_METHODS.get(opts.method)  # a typo fails now, not after the upstream stages trained
    t = parse_target(opts.target)
    if t.kind == "latency_ms" and not opts.measure_latency:
        raise ConfigError(f"target={opts.target!r} needs measure_latency: true")


@STAGES.register("prune", schema=PruneOptions, accepts=("run",), produces="run", needs_input=True,
                 check=_check_prune)
def prune_stage(ctx: StageContext, opts: PruneOptions) -> StageOutput:
    """Prune the input run, fine-tune, keep the result only within the accuracy budget."""
    out, src = ctx.dir / "run", ctx.input.path("run")  # type: ignore[union-attr]
    result = _compress("prune_run")(
        src, out, method=opts.method, target=opts.target, steps=opts.steps,
        finetune_epochs=opts.finetune_epochs, round_to=opts.round_to, lr=opts.lr, overwrite=True,
        **_settings(opts))
    cmd = _command("prune", [src, "--out", out, "--method", opts.method, "--target", opts.target, "--steps", opts.steps,
                             "--finetune-epochs", opts.finetune_epochs, "--round-to", opts.round_to or 1,
                             *(["--lr", f"{opts.lr:g}"] if opts.lr else [])], opts)
    return _output(result, out, ctx.dir, cmd, opts)


# ------------------------------------------------------------------------------- distill
class DistillOptions(_CompressOptions):
    """``dlopt.compress.distill_run`` options; the input run is the teacher. ``student`` is
    a zoo name or dict, or the name of an earlier stage whose run becomes the student."""

    student: str | dict[str, Any]
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1)
    hint: str | None = None
    epochs: int = Field(3, ge=1)
    lr: float | None = Field(None, gt=0)
    recipe: dict[str, Any] = Field(default_factory=dict, description="fit() keywords, e.g. batch_size")


def _check_distill(pipeline: Any, opts: DistillOptions) -> None:
    """A zoo student (name or dict) must parse as a model of ``base`` now: the stage would
    find out only after its teacher has trained. A stage name or a run directory (which
    ``distill_run`` also takes) is resolved by the stage."""
    student = opts.student
    if isinstance(student, str) and (student in {s.name for s in pipeline.stages} or Path(student).is_dir()):
        return
    # not parse_merged: the student replaces base's model section (merged over it, the teacher's
    # lenet5 width 0.5 would reach an mlp student) and its keys are student.KEY, not student.model.KEY
    data = deep_merge(pipeline.base, {"name": "check"})
    data["model"] = dict(student) if isinstance(student, dict) else {"name": student}
    try:
        parse_config(data)
    except ConfigError as err:
        raise ConfigError(f"student: {err}") from None


def _student_ref(opts: DistillOptions) -> list[str]:
    return [opts.student] if isinstance(opts.student, str) else []


@STAGES.register("distill", schema=DistillOptions, accepts=("run",), produces="run", needs_input=True,
                 accepts_many=("run",), check=_check_distill, option_refs=_student_ref)
def distill_stage(ctx: StageContext, opts: DistillOptions) -> StageOutput:
    """Train the student on the teacher's softened outputs (Hinton KD)."""
    student: Any = opts.student
    if isinstance(student, str) and student in ctx.records:
        student = ctx.records[student].path("run")
    out, teacher = ctx.dir / "run", ctx.input.path("run")  # type: ignore[union-attr]
    result = _compress("distill_run")(
        teacher, student, out, temperature=opts.temperature, alpha=opts.alpha,
        hint=opts.hint, epochs=opts.epochs, lr=opts.lr, overwrite=True, **_settings(opts), **opts.recipe)
    cmd = _command("distill", ["--teacher", teacher, "--student", _student_arg(student), "--out", out,
                               "--temperature", f"{opts.temperature:g}", "--alpha", f"{opts.alpha:g}",
                               "--epochs", opts.epochs, *(["--hint", opts.hint] if opts.hint else []),
                               *(["--lr", f"{opts.lr:g}"] if opts.lr else [])], opts)
    if opts.recipe:  # fit() keywords have no dlopt distill flag
        cmd += f"  # recipe (pipeline only): {opts.recipe}"
    return _output(result, out, ctx.dir, cmd, opts)


def _student_arg(student: Any) -> str:
    """``--student`` of ``dlopt distill``: a run directory, or ``NAME:key=value,...``."""
    if not isinstance(student, dict):
        return str(student)
    keys = ",".join(f"{k}={v}" for k, v in student.items() if k != "name")
    return f"{student.get('name')}:{keys}" if keys else str(student.get("name"))


# ------------------------------------------------------------------------------ quantize
class QuantizeOptions(_CompressOptions):
    """``dlopt.compress.quantize_run`` options; the input is a run (or an export stage)."""

    method: str = "auto"
    calibration: str = "minmax"
    calib_samples: int = Field(512, ge=1)
    per_channel: bool = True
    epochs: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    conv_kernel: Literal["auto", "direct", "gemm"] = "auto"


def _check_quantize(pipeline: Any, opts: QuantizeOptions) -> None:
    try:
        from dlopt.compress.quantize import QUANT_METHODS
        from dlopt.deploy import check_calibration
    except ImportError:
        return  # the stage itself reports the missing room
    QUANT_METHODS.get(opts.method)
    check_calibration(opts.calibration, key="calibration=")


@STAGES.register("quantize", schema=QuantizeOptions, accepts=("run", "onnx"), produces="run", needs_input=True,
                 check=_check_quantize)
def quantize_stage(ctx: StageContext, opts: QuantizeOptions) -> StageOutput:
    """Quantize the input's model (INT8 ONNX for static/dynamic)."""
    src = ctx.input
    source = src.path("run") if "run" in src.artifacts else src.path("onnx")  # type: ignore[union-attr]
    out = ctx.dir / "run"
    result = _compress("quantize_run")(
        source, out, method=opts.method, calibration=opts.calibration, calib_samples=opts.calib_samples,
        per_channel=opts.per_channel, epochs=opts.epochs, lr=opts.lr, conv_kernel=opts.conv_kernel, overwrite=True,
        **_settings(opts))
    cmd = _command("quantize", [source, "--out", out, "--method", opts.method, "--calibration", opts.calibration,
                                "--calib-samples", opts.calib_samples,
                                "--per-channel" if opts.per_channel else "--per-tensor", "--epochs", opts.epochs,
                                "--lr", f"{opts.lr:g}", "--conv-kernel", opts.conv_kernel], opts)
    return _output(result, out, ctx.dir, cmd, opts)
