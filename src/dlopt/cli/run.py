"""``dlopt run PIPELINE.yaml``: every stage from data to a deployable model, cached and
resumable, ending with the stage table and the report path."""

from __future__ import annotations

import contextlib
import shlex
import signal
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from dlopt.cli._app import command, fail, optuna_logging, setup_logging


_RESUME = "rerun the same dlopt run command to continue (the stage resumes in place)"


class _SigTerm(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be: a stage's ``finally`` stops its children (the
    server of serve_check, the benchmark worker) and finished stages stay cached."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handle(signum: int, frame: Any) -> None:
        # a second SIGTERM must not cut the cleanup short and orphan a child
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _SigTerm

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@command("run", resume_hint=_RESUME)
def run(
    pipeline: Path = typer.Argument(..., help="pipeline file (YAML), e.g. examples/mnist-pipeline.yaml"),
    overrides: list[str] = typer.Option([], "--set", help="override: base.train.epochs=1, stages.prune.steps=2"),
    root: Optional[Path] = typer.Option(None, "--run-dir", help="output directory (default runs/<name>)"),
    force: list[str] = typer.Option([], "--force", help="redo this stage even when cached (repeatable)"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch"),
    no_report: bool = typer.Option(False, "--no-report", help="skip report.html / report.md"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a pipeline: skips stages whose config and inputs are unchanged, resumes an
    interrupted one, writes results.json and report.html."""
    setup_logging(verbose)
    from dlopt.pipeline import load_pipeline, run_pipeline

    cfg, options = load_pipeline(pipeline, overrides)  # everything validated before any work
    if any(s.kind == "tune" for s in cfg.stages):
        optuna_logging(verbose)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)

    current: list[str] = []

    def started(name: str, how: str) -> None:
        current[:] = [name]
        if how != "cached":
            typer.echo(f"[{name}] {'resuming' if how == 'resume' else 'running'} ...", err=True)

    def finished(rec: object) -> None:
        typer.echo(f"[{rec.name}] {rec.status} ({rec.seconds:.1f}s)", err=True)  # type: ignore[attr-defined]

    try:
        with _sigterm_as_interrupt():
            result = run_pipeline(cfg, options, source=pipeline, root=root, force=force,
                                  report=not no_report, on_start=started, on_stage=finished)
    except _SigTerm:
        where = f" in stage {current[0]!r}" if current else ""
        fail(f"stopped by SIGTERM{where}; finished stages are kept; rerun the same dlopt run command "
             "to continue", 143)
    from dlopt.report import stage_text

    typer.echo(stage_text(result.root))
    if result.report:
        typer.echo(f"report: {result.report['html']}")
    elif result.removed_report:
        typer.echo(f"report: removed the earlier report (it no longer matched results.json); "
                   f"write one with: {shlex.join(['dlopt', 'report', str(result.root)])}")
    typer.echo(f"results: {result.root / 'results.json'}")

