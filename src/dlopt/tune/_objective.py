"""Objectives: what a trial runs. An objective is any callable

    objective(cfg: RunConfig, ctx: TrialContext) -> Mapping[str, float]

that trains ``cfg`` (writing under ``ctx.run_dir``), calls ``ctx.check_static(...)`` before
training and ``ctx.report(epoch, metrics)`` after each epoch (either may raise
``optuna.TrialPruned``), and returns the trial's metrics (``val_accuracy``, ``params``, ...).
:func:`train_objective` — dlopt's training engine — is the default.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from dlopt.tune._metrics import latency_function, metrics_from_result
from dlopt.tune._outputs import LIGHT_FILES

if TYPE_CHECKING:
    from torch import nn

    from dlopt.config import RunConfig
    from dlopt.tune._pruning import TrialContext

log = logging.getLogger(__name__)

__all__ = ["Objective", "train_objective", "static_metrics", "input_shape"]

Objective = Callable[["RunConfig", "TrialContext"], Mapping[str, float]]


def train_objective(cfg: "RunConfig", ctx: "TrialContext") -> dict[str, float]:
    """Train ``cfg`` in-process with ``dlopt.train.train_run``; return its flattened metrics.
    A retry continues the failed trial's last checkpoint when it can be resumed exactly."""
    from dlopt.train import train_run

    resume = _take_over(cfg, ctx)
    hook = _TrialCallback(cfg, ctx)
    callbacks = [hook, _EpochReport(hook), *([_Replay(ctx)] if resume else [])]
    try:
        result = train_run(cfg, run_dir=ctx.run_dir, callbacks=callbacks, resume=resume,
                           overwrite=not resume)
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
    """Hooks a trial into the training loop: static metrics at fit start (order 0: before
    channels_last, compile and EMA change the model), each epoch through :class:`_EpochReport`.

    With ``train.cv`` every fold is a run of its own: fold k's epoch e is reported as step
    ``(k - 1) * train.epochs + e``, so the pruner sees every fold and compares each step with
    the same fold and epoch of other trials (their folds are the same split of the data)."""

    def __init__(self, cfg: "RunConfig", ctx: "TrialContext") -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.offset = -cfg.train.epochs  # steps reported by the folds before this one

    def on_fit_start(self, state: Any) -> None:
        self.offset += self.cfg.train.epochs
        model = getattr(state, "module", None) or state.model  # the raw (uncompiled) model
        self.ctx.check_static(static_metrics(
            model, input_shape(self.cfg), cfg=self.cfg,
            latency="latency_ms" in self.ctx.policy.needed()))


class _EpochReport:
    """Reports each epoch of the trial's fold (see :class:`_TrialCallback`) to its context.
    The epoch where max_steps or early stopping ends the last fold is its last step: stopping
    the trial there saves no training, so the pruner is not asked."""

    # after EarlyStopping (100), whose stop request of this epoch is then known; before
    # Progress (200) and Checkpointing (1000): a pruned epoch is neither printed nor saved
    order = 150

    def __init__(self, trial: _TrialCallback) -> None:
        self.trial = trial

    def on_epoch_end(self, state: Any) -> None:
        cfg, ctx = self.trial.cfg, self.trial.ctx
        step = self.trial.offset + state.epoch
        if (state.done or state.stop) and self.trial.offset + cfg.train.epochs == ctx.last_step:
            ctx.last_step = step
        ctx.report(step, state.metrics)


class _Replay:
    """A retry that continues a checkpoint reports the epochs the failed trial trained, as
    recorded there, before training goes on: the pruner sees the whole curve, each epoch once
    (a new trial has reported nothing, and optuna ignores a step reported twice)."""

    order = 1002  # after Checkpointing (1000) restored the history, and the SIGTERM handler

    def __init__(self, ctx: "TrialContext") -> None:
        self.ctx = ctx

    def on_fit_start(self, state: Any) -> None:
        for row in state.history:
            self.ctx.report(row["epoch"], row)


def _take_over(cfg: "RunConfig", ctx: "TrialContext") -> bool:
    """Move the failed trial's checkpoints (and weights) into this retry's run directory when
    they can be resumed exactly; it keeps its light files. False: train from scratch."""
    from dlopt.config import dump_config
    from dlopt.train import rundir

    src = ctx.resume_from
    if src is None or not (src / rundir.CHECKPOINTS / "last").exists():
        return False
    why = _unresumable(cfg, src, ctx.run_dir)
    if why is not None:
        log.warning("trial %d: %s; training from scratch", ctx.number, why)
        return False
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in LIGHT_FILES:
            shutil.copy2(item, ctx.run_dir / item.name)
        else:  # a sibling directory: a rename, whatever the checkpoint's size
            os.replace(item, ctx.run_dir / item.name)
    # same config but the run name, checked above: the resume check compares config.yaml
    dump_config(cfg, ctx.run_dir / rundir.CONFIG)
    log.info("trial %d: continues the checkpoint of the failed trial it retries (%s)",
             ctx.number, src.name)
    return True


def _unresumable(cfg: "RunConfig", src: Path, dst: Path) -> str | None:
    """Why ``src``'s checkpoint cannot continue as run ``cfg`` in ``dst``, or None."""
    import yaml

    from dlopt.config import config_to_dict
    from dlopt.train import rundir
    from dlopt.train.checkpoint import CheckpointError, read_checkpoint

    if dst.exists() and any(dst.iterdir()):
        return f"its run directory {dst} is not empty"
    try:
        saved = yaml.safe_load((src / rundir.CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        return f"the failed trial's {src / rundir.CONFIG} is unreadable"
    if not isinstance(saved, dict) or {**saved, "name": cfg.name} != config_to_dict(cfg):
        return f"the config changed since the failed trial ({src.name}) ran"
    try:
        read_checkpoint(src, map_location="cpu")
    except CheckpointError as exc:
        return f"the failed trial's checkpoint cannot be read ({exc})"
    return None


def static_metrics(model: "nn.Module", shape: tuple[int, ...] | None, *,
                   cfg: "RunConfig | None" = None, latency: bool = False) -> dict[str, float]:
    """Metrics of the architecture alone: ``params`` and ``size_bytes`` always; ``macs`` given
    the input shape; ``latency_ms`` (batch 1, measured by dlopt.deploy) when asked.

    ``size_bytes`` is the length of the weights file a run writes (safetensors: header,
    buffers, tied tensors once per name), not ``params x 4``: a constraint checked on it before
    training decides as the finished trial's file size does."""
    from dlopt.models import summary
    from dlopt.models.summary import count_params
    from dlopt.train.checkpoint import weights_size

    out = {"params": float(count_params(model)), "size_bytes": float(weights_size(model))}
    if shape is None:
        return out
    out["macs"] = float(summary(model, shape).macs)
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
