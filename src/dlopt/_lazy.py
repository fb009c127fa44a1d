"""Lazy public names for package ``__init__`` modules (PEP 562): importing a package stays
cheap, and the module behind a name (torch, onnxruntime, optuna...) loads on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str, lazy: Mapping[str, str], eager: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``: each name in ``lazy`` (public name
    -> module that defines it) is imported on first access; ``eager`` names are already bound."""
    names = sorted({*eager, *lazy})

    def __getattr__(name: str) -> Any:
        if name in lazy:
            return getattr(importlib.import_module(lazy[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__, names
