"""The training engine: a small loop that fires events, techniques and callbacks hooked to
them, exact resume, and the ``fit``/``load`` API.

    result = dlopt.fit("lenet5", "mnist", epochs=3, lr=2e-2, schedule="one-cycle",
                       label_smoothing=0.1, run_dir="runs/demo")
    loaded = dlopt.load("runs/demo")
    pred, proba = loaded.predict(raw_images)

Importing this package stays light (no torch): config validation imports the optimizer,
schedule and loss registries from here. Everything else loads on first attribute access.
"""

from __future__ import annotations

from dlopt._lazy import lazy_exports

# public name -> private module that defines it (imported on first use)
_LAZY = {
    "fit": "dlopt.train.api",
    "train_run": "dlopt.train.api",
    "recipe_config": "dlopt.train.api",
    "FitResult": "dlopt.train.api",
    "load": "dlopt.train.loaded",
    "evaluate": "dlopt.train.loaded",
    "predict": "dlopt.train.loaded",
    "LoadedModel": "dlopt.train.loaded",
    "cross_validate": "dlopt.train.cv",
    "Event": "dlopt.train.events",
    "Hooks": "dlopt.train.events",
    "State": "dlopt.train.state",
    "run": "dlopt.train.loop",
    "CheckpointError": "dlopt.train.checkpoint",
    "read_checkpoint": "dlopt.train.checkpoint",
    "Terminated": "dlopt.train.callbacks.signals",
    "select_device": "dlopt.train.device",
    "METRICS": "dlopt.train.metrics",
    "class_probabilities": "dlopt.train._scores",
    "OPTIMIZERS": "dlopt.train.optim",
    "SCHEDULES": "dlopt.train.schedules",
    "LOSSES": "dlopt.train.losses",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
