"""``dlopt version``."""

from __future__ import annotations

import platform

import typer

from dlopt import __version__
from dlopt.cli._app import command


@command("version")
def version() -> None:
    """Print dlopt, Python and key library versions."""
    from importlib.metadata import PackageNotFoundError, version as _v

    typer.echo(f"dlopt {__version__}")
    typer.echo(f"python {platform.python_version()}")
    for pkg in ("torch", "onnxruntime", "optuna"):
        try:
            typer.echo(f"{pkg} {_v(pkg)}")
        except PackageNotFoundError:
            typer.echo(f"{pkg} not installed")
