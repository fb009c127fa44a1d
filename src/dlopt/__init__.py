"""dlopt: train, tune, compress, export and serve deep-learning models, every step measured.

Heavy submodules load on first use, so ``import dlopt`` stays cheap.
"""

from __future__ import annotations

from dlopt._lazy import lazy_exports

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

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, eager=["__version__"])
