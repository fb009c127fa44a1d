"""Objectives: what a trial runs. An objective is any callable

    objective(cfg: RunConfig, ctx: TrialContext) -> Mapping[str, float]

that trains ``cfg`` (writing under ``ctx.run_dir``), calls ``ctx.check_static(...)`` before
training and ``ctx.report(epoch, metrics)`` after each epoch (either may raise
``optuna.TrialPruned``), and returns the trial's metrics (``val_accuracy``, ``params``, ...).
:func:`train_objective` — dlopt's training engine — is the default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

from dlopt.tune._metrics import latency_function, metrics_from_result

if TYPE_CHECKING:
    from torch import nn

    from dlopt.config import RunConfig
    from dlopt.tune._pruning import TrialContext

__all__ = ["Objective", "train_objective", "static_metrics", "input_shape"]

Objective = Callable[["RunConfig", "TrialContext"], Mapping[str, float]]


def train_objective(cfg: "RunConfig", ctx: "TrialContext") -> dict[str, float]:
    """Train ``cfg`` in-process with ``dlopt.train.train_run``; return its flattened metrics."""
    from dlopt.train import train_run

    try:
        result = train_run(cfg, run_dir=ctx.run_dir, callbacks=[_TrialCallback(cfg, ctx)],
                           overwrite=True)
        metrics = {**ctx.static, **metrics_from_result(result.summary, result.history)}
        if "latency_ms" in ctx.policy.needed() and "latency_ms" not in metrics:
            # no registry shape before training (user data): measure the trained model now
            shape = (result.summary.get("data_info") or {}).get("input_shape")
            measure = latency_function()
            if shape and measure is not None:
                metrics["latency_ms"] = float(measure(result.model, tuple(shape), cfg))
        # the trained model goes with the result: drop it now
        del result
        return metrics
    finally:
        if cfg.train.compile:
            import torch

            torch.compiler.reset()  # compiled graphs keep the trial's model alive


class _TrialCallback:
    """Hooks a trial into the training loop: static metrics at fit start, then each epoch."""

    def __init__(self, cfg: "RunConfig", ctx: "TrialContext") -> None:
        self.cfg = cfg
        self.ctx = ctx

    def on_fit_start(self, state: Any) -> None:
        model = getattr(state, "module", None) or state.model  # the raw (uncompiled) model
        self.ctx.check_static(static_metrics(
            model, input_shape(self.cfg), cfg=self.cfg,
            latency="latency_ms" in self.ctx.policy.needed()))

    def on_epoch_end(self, state: Any) -> None:
        self.ctx.report(state.epoch, state.metrics)


def static_metrics(model: "nn.Module", shape: tuple[int, ...] | None, *,
                   cfg: "RunConfig | None" = None, latency: bool = False) -> dict[str, float]:
    """Metrics of the architecture alone: ``params`` always; ``macs`` and ``size_bytes`` given
    the input shape; ``latency_ms`` (batch 1, measured by dlopt.deploy) when asked."""
    from dlopt.models import summary
    from dlopt.models.summary import count_params

    out = {"params": float(count_params(model))}
    if shape is None:
        return out
    s = summary(model, shape)
    out.update(macs=float(s.macs), size_bytes=float(s.size_bytes))
    measure = latency_function() if latency and cfg is not None else None
    if measure is not None:
        out["latency_ms"] = float(measure(model, shape, cfg))
    return out


def input_shape(cfg: "RunConfig") -> tuple[int, ...] | None:
    """Per-sample model input shape of a built-in dataset (its registry record), else None:
    user data, or a projection (pca, lda) that changes the shape, is known after loading."""
    from dlopt.data import DATASETS
    from dlopt.data.preprocess import PREPROCESS_OPS

    if cfg.data.name not in DATASETS or any(
        PREPROCESS_OPS.get(s.op).info.get("kind") == "projection" for s in cfg.data.preprocess
    ):
        return None
    shape = DATASETS.get(cfg.data.name).info.get("input_shape")
    return tuple(shape) if shape else None
