"""Hyperparameter search: Optuna studies over any training-config key, early stopping of bad
trials, multi-objective with constraints, crash-safe parallel workers, LR range test.

    from dlopt.config import TuneConfig, load_config
    from dlopt.tune import tune
    result = tune(load_config("examples/tune-mnist.yaml", schema=TuneConfig), trials=20)

Importing this package stays light; optuna and torch load on first use.
"""

from __future__ import annotations

from dlopt._lazy import lazy_exports

from dlopt.tune._registry import PRUNERS, SAMPLERS

#: how a ``dlopt tune`` stopped by SIGTERM continues, in place of ``dlopt train``'s
#: "continue with --resume" (the CLI and every worker process say the same)
RESUME_HINT = "the trial is failed and retried when the same dlopt tune command is rerun"

# public name -> private module that defines it (imported on first use)
_LAZY = {
    "tune": "dlopt.tune._study",
    "TuneResult": "dlopt.tune._study",
    "TrialRecord": "dlopt.tune._study",
    "SearchSpace": "dlopt.tune._space",
    "TrialContext": "dlopt.tune._pruning",
    "ParetoMedianRule": "dlopt.tune._pruning",
    "Objective": "dlopt.tune._objective",
    "train_objective": "dlopt.tune._objective",
    "static_metrics": "dlopt.tune._objective",
    "check_training_metrics": "dlopt.tune._metrics",
    "lr_find": "dlopt.tune._lr_find",
    "LRFindResult": "dlopt.tune._lr_find",
    "suggest_lr": "dlopt.tune._lr_find",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, eager=["PRUNERS", "SAMPLERS", "RESUME_HINT"])
