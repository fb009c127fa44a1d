"""``dlopt prune``, ``dlopt distill`` and ``dlopt quantize``: one library call each.

Exit 0 also when the guard rejects the result (``accepted: false`` in summary.json, the
best model so far kept), 2 for bad arguments, 1 when the run itself fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import typer

from dlopt.cli._app import command, setup_logging


def _settings(max_drop_pt: float, latency_ms: Optional[float], no_latency: bool, threads: int,
              exporter: str) -> tuple[Any, Any]:
    from dlopt.compress import Budget, MeasureSettings
    from dlopt.deploy import EXPORTERS

    EXPORTERS.get(exporter)  # unknown name: one line listing the valid ones
    return Budget(max_drop_pt=max_drop_pt, latency_ms=latency_ms), MeasureSettings(
        latency=not no_latency, threads=threads, exporter=exporter)


def _call(verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn``; an unexpected library error becomes a RunError (exit 1), one line."""
    from dlopt.errors import DloptError, RunError, first_line

    try:
        return fn(*args, **kwargs)
    except DloptError:
        raise
    except (RuntimeError, ValueError, OSError) as exc:
        raise RunError(f"{verb} failed: {type(exc).__name__}: {first_line(exc)}") from None


def _report(res: Any) -> None:
    c = res.summary.get("compression", {})
    b, a = res.before, res.after
    verdict = "accepted" if res.accepted else "NOT accepted (best model so far kept)"
    typer.echo(f"{res.run_dir}: {verdict}: {res.reason}")
    # rejected: the figures after each arrow are the candidate's, not those of the model kept in OUT
    who = "" if res.accepted else f" input -> rejected candidate ({res.candidate_dir}):"
    metric = a.get("metric") or b.get("metric") or "accuracy"
    typer.echo(f" {who} test {metric} {_num(b.get(f'test_{metric}'))} -> {_num(a.get(f'test_{metric}'))}"
               f"  params {b.get('params')} -> {a.get('params')}  MACs {b.get('macs')} -> {a.get('macs')}"
               f"  {_sizes(b, a)}")
    if "target_met" in c:  # prune: the grid's nearest point can fall short of the target
        typer.echo(_target_line(c, a, accepted=res.accepted))
    if c.get("nokd"):  # distill --baseline: the same student trained without the teacher
        typer.echo(f"  same student without KD (--baseline): test {metric} {_num(c['nokd'].get(f'test_{metric}'))}")
    for bs, t in (a.get("latency_ms") or {}).items():
        t0 = (b.get("latency_ms") or {}).get(bs)
        word = "SLOWER" if c.get(f"slower_bs{bs}") else "ok"
        typer.echo(f"  ORT p50 batch {bs}: {t0} -> {t} ms (speedup {c.get(f'speedup_bs{bs}')}x, {word})")


def _num(value: Optional[float]) -> str:
    return f"{float('nan') if value is None else value:.4f}"


def _sizes(b: dict[str, Any], a: dict[str, Any]) -> str:
    """Like with like: the two ONNX files when both were written (an INT8 file against the FP32
    export, not against the FP32 safetensors), else the weights files; plus what a dense file
    does not show: low-bit weights packed, zeroed weights compressed."""
    if b.get("onnx_bytes") is not None and a.get("onnx_bytes") is not None:
        text = f"ONNX size {b['onnx_bytes']} -> {a['onnx_bytes']} B"
    else:
        text = f"size {b.get('size_bytes')} -> {a.get('size_bytes')} B"
    if a.get("packed_bytes") is not None:
        text += f" (weights packed: {b.get('size_bytes')} -> {a['packed_bytes']} B)"
    elif a.get("sparsity") and a.get("compressed_bytes") is not None:
        text += f" (weights gzip: {b.get('compressed_bytes')} -> {a['compressed_bytes']} B)"
    return text


def _target_line(c: dict[str, Any], a: dict[str, Any], *, accepted: bool) -> str:
    figures = (f"MACs removed {c['macs_reduction']:.1%}, params removed {c['params_reduction']:.1%}, "
               f"sparsity {a.get('sparsity', 0.0):.1%}")
    if accepted:
        return f"  target {c['target']}: {'met' if c['target_met'] else 'NOT met'} ({figures})"
    reached = "reached it" if c.get("candidate_target_met") else "fell short of it"
    return (f"  target {c['target']}: NOT met by the kept model (the input, unchanged); the rejected "
            f"candidate {reached} ({figures})")


_DROP = typer.Option(0.5, "--max-drop-pt",
                     help="guard budget: max validation points lost (accuracy; R2 x 100 for regression)")
_LAT = typer.Option(None, "--latency-ms", help="latency budget: ORT p50 ms at batch 64")
_NOLAT = typer.Option(False, "--no-latency", help="skip ONNX Runtime timing (faster, no speed verdict)")
_THREADS = typer.Option(1, "--threads", min=1, help="threads for the ORT timing")
_EXPORTER = typer.Option("dynamo", "--exporter", help="ONNX exporter for the measured files: dynamo | legacy")


_NO_RESUME = "fine-tuning cannot be resumed; rerun with --overwrite to start over"


@command("prune", resume_hint=_NO_RESUME)
def prune(
    run: Path = typer.Argument(..., help="run directory to prune"),
    out: Path = typer.Option(..., "--out", "-o", help="output run directory"),
    method: str = typer.Option("l1", "--method", help="l1 | l2 | bn | taylor (structured); global | local (unstructured)"),
    target: str = typer.Option("macs=0.5", "--target", help="sparsity=F | macs=F (fraction removed) | latency_ms=MS"),
    steps: int = typer.Option(1, "--steps", help="iterative pruning steps (fine-tuned between)"),
    finetune_epochs: int = typer.Option(1, "--finetune-epochs", help="epochs of fine-tuning per step"),
    round_to: int = typer.Option(8, "--round-to", help="round channel counts to a multiple (1: off)"),
    lr: Optional[float] = typer.Option(None, "--lr", help="fine-tuning learning rate (default: the run's own)"),
    max_drop_pt: float = _DROP, latency_ms: Optional[float] = _LAT, no_latency: bool = _NOLAT,
    threads: int = _THREADS, exporter: str = _EXPORTER,
    overwrite: bool = typer.Option(False, "--overwrite"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Prune a run (channels removed, or weights zeroed), fine-tune, measure, guard."""
    setup_logging(verbose)
    from dlopt.compress import prune_run

    budget, measure = _settings(max_drop_pt, latency_ms, no_latency, threads, exporter)
    _report(_call("prune", prune_run, run, out, method=method, target=target, steps=steps,
                  finetune_epochs=finetune_epochs, round_to=round_to, lr=lr, budget=budget, measure=measure,
                  overwrite=overwrite))


@command("distill", resume_hint=_NO_RESUME)
def distill(
    teacher: Path = typer.Option(..., "--teacher", help="teacher run directory"),
    student: str = typer.Option(..., "--student", help="zoo model name, NAME:key=value,... or a run directory"),
    out: Path = typer.Option(..., "--out", "-o", help="output run directory"),
    temperature: float = typer.Option(4.0, "--temperature", "-T"),
    alpha: float = typer.Option(0.9, "--alpha", help="weight of the soft-target loss"),
    hint: Optional[str] = typer.Option(None, "--hint", help="STUDENT_LAYER:TEACHER_LAYER attention hint"),
    epochs: int = typer.Option(3, "--epochs"),
    lr: Optional[float] = typer.Option(None, "--lr", help="default: the teacher's"),
    baseline: bool = typer.Option(False, "--baseline", help="also train the student without KD"),
    max_drop_pt: float = _DROP, latency_ms: Optional[float] = _LAT, no_latency: bool = _NOLAT,
    threads: int = _THREADS, exporter: str = _EXPORTER,
    overwrite: bool = typer.Option(False, "--overwrite"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a student on a teacher's soft targets (Hinton KD, optional hint loss)."""
    setup_logging(verbose)
    from dlopt.compress import distill_run

    budget, measure = _settings(max_drop_pt, latency_ms, no_latency, threads, exporter)
    _report(_call("distill", distill_run, teacher, _student(student), out, temperature=temperature, alpha=alpha,
                  hint=hint, epochs=epochs, lr=lr, baseline=baseline, budget=budget, measure=measure,
                  overwrite=overwrite))


def _student(text: str) -> Any:
    """``resnet`` | ``resnet:width=0.5,depth=8`` | a run directory."""
    import yaml

    from dlopt.errors import ConfigError

    if Path(text).is_dir():
        return Path(text)
    name, _, opts = text.partition(":")
    model: dict[str, Any] = {"name": name}
    for item in filter(None, opts.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--student {text!r}: {item!r} is not key=value; e.g. resnet:width=0.5")
        model[key.strip()] = yaml.safe_load(value)
    return model


@command("quantize", resume_hint=_NO_RESUME)
def quantize(
    src: Path = typer.Argument(..., help="run directory or exported .onnx"),
    out: Path = typer.Option(..., "--out", "-o", help="output run directory"),
    method: str = typer.Option("auto", "--method", help="auto | static | dynamic | qat | binary | ternary"),
    calibration: str = typer.Option("minmax", "--calibration", help="minmax | entropy | percentile"),
    calib_samples: int = typer.Option(512, "--calib-samples", help="training samples for calibration"),
    per_channel: bool = typer.Option(True, "--per-channel/--per-tensor"),
    epochs: int = typer.Option(1, "--epochs", help="training epochs (qat, binary, ternary)"),
    lr: float = typer.Option(1e-4, "--lr"),
    conv_kernel: str = typer.Option("auto", "--conv-kernel",
                                    help="INT8 conv kernel: auto (time both, keep the faster) | direct | gemm"),
    data: Optional[str] = typer.Option(None, "--data", help="an .onnx source's data to calibrate and judge on "
                                       "(default: the dataset its metadata names): a name (npz:FILE) or a "
                                       "YAML data mapping ('{name: csv:FILE, target: label}')"),
    max_drop_pt: float = _DROP, latency_ms: Optional[float] = _LAT, no_latency: bool = _NOLAT,
    threads: int = _THREADS, exporter: str = _EXPORTER,
    overwrite: bool = typer.Option(False, "--overwrite"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Quantize a run or ONNX file (INT8 via ONNX Runtime, QAT/PACT, binary/ternary research)."""
    setup_logging(verbose)
    from dlopt.compress import quantize_run

    budget, measure = _settings(max_drop_pt, latency_ms, no_latency, threads, exporter)
    _report(_call("quantize", quantize_run, src, out, method=method, calibration=calibration,
                  calib_samples=calib_samples, per_channel=per_channel, epochs=epochs, lr=lr,
                  conv_kernel=conv_kernel, budget=budget,
                  measure=measure, overwrite=overwrite, data=_data(data)))


def _data(text: Optional[str]) -> Any:
    """``--data``: a dataset name, or a YAML mapping of data config keys."""
    import yaml

    from dlopt.errors import ConfigError

    if text is None or not text.lstrip().startswith("{"):
        return text
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError:
        mapping = None
    if not isinstance(mapping, dict):
        raise ConfigError(f"--data {text!r} is not a YAML mapping; allowed: a dataset name or e.g. "
                          f"'{{name: csv:rows.csv, target: label}}'")
    return mapping
