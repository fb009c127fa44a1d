"""Command line: ``dlopt <verb>``. Each room's verbs live in their own module here."""

from __future__ import annotations

import importlib
import pkgutil

from dlopt.cli._app import app

__all__ = ["app", "main"]

# Every public module in this package registers its verbs on ``app`` when imported.
for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")


def main() -> None:
    """Console-script entry point."""
    app()
