"""``dlopt report RUN`` (regenerate a pipeline report) and ``dlopt compare RUN RUN ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlopt.cli._app import command, setup_logging


@command("report")
def report(
    run: Path = typer.Argument(..., help="pipeline run directory (holds results.json)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Regenerate report.html / report.md of a pipeline run from its results."""
    setup_logging(verbose)
    from dlopt.report import build_report, stage_text

    paths = build_report(run)
    typer.echo(stage_text(run))
    typer.echo(f"report: {paths['html']}")


@command("compare")
def compare(
    runs: list[Path] = typer.Argument(..., help="two or more pipeline (or training) run directories"),
    out: Optional[Path] = typer.Option(None, "--out", help="output directory (default runs/compare)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Put several runs side by side: one table, training curves overlaid."""
    setup_logging(verbose)
    from dlopt.report import compare_runs

    paths = compare_runs(runs, out or Path("runs") / "compare")
    typer.echo(f"compare: {paths['html']}")
