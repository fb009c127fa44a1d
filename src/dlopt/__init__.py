"""dlopt: train, tune, compress, export and serve deep-learning models, every step measured.

Heavy submodules load on first use, so ``import dlopt`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "load_dataset": "dlopt.data",
    "list_datasets": "dlopt.data",
    "create_model": "dlopt.models",
    "list_models": "dlopt.models",
    "summary": "dlopt.models",
    "fit": "dlopt.train",
    "load": "dlopt.train",
    "RunConfig": "dlopt.config",
    "load_config": "dlopt.config",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dlopt' has no attribute {name!r}")
