"""Training-side stages: ``train``, ``retrain``, ``lr_find``, ``tune``, ``sweep``.

Each one calls the training or tuning room (``dlopt.train.train_run``, ``dlopt.tune``);
nothing here trains by itself. A training stage resumes from ``run/checkpoints/last`` when
its directory holds an interrupted attempt with the same cache key.
"""

from __future__ import annotations

import logging
import math
import shlex
import statistics
from pathlib import Path
from typing import Any

from pydantic import Field

from dlopt.config import dump_config, parse_config
from dlopt.errors import ConfigError, RunError
from dlopt.pipeline._context import STAGES, Options, StageContext, StageOutput, deep_merge, parse_merged

log = logging.getLogger(__name__)

__all__ = ["run_metrics", "train_in"]


# ------------------------------------------------------------------------------- helpers
def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text())


def run_metrics(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics, timings)`` of a finished training run, from its ``summary.json``."""
    s = _read_json(run_dir / "summary.json")
    weights = run_dir / "model.safetensors"
    metrics: dict[str, Any] = {
        "task": s.get("task"),
        "accuracy": s.get("test", {}).get("accuracy"),
        "params": s.get("params"),
        "macs": s.get("macs"),
        "size_bytes": weights.stat().st_size if weights.exists() else s.get("size_bytes"),
        "epochs": s.get("epochs"),
        "best_epoch": s.get("best_epoch"),
        **{f"test_{k}": v for k, v in s.get("test", {}).items()},
        **{f"val_{k}": v for k, v in s.get("val", {}).items()},
    }
    return metrics, {"train_seconds": s.get("train_seconds")}


def train_in(run_dir: Path, data: dict[str, Any], *, resume: bool) -> None:
    """Train ``data`` (a raw RunConfig) in ``run_dir``; continue an interrupted attempt from
    its last checkpoint when ``resume``; a finished attempt is kept as it is."""
    from dlopt.train import train_run

    cfg = parse_config(data)
    if resume and (run_dir / "summary.json").exists():
        log.info("%s already finished; keeping it", run_dir)
        return
    again = resume and (run_dir / "checkpoints" / "last").exists()
    if again:
        log.info("resuming %s from its last checkpoint", run_dir)
    train_run(cfg, run_dir=run_dir, resume=again, overwrite=not again)


def _run_output(run_dir: Path, rel: str = "run") -> StageOutput:
    metrics, timings = run_metrics(run_dir)
    return StageOutput(metrics, timings, {"run": rel},
                       [shlex.join(["dlopt", "train", str(run_dir / "config.yaml"), "--run-dir", str(run_dir),
                                    "--overwrite"])])


# --------------------------------------------------------------------------------- train
class TrainOptions(Options):
    """``config``: keys merged over the pipeline's ``base`` (e.g. ``{train: {epochs: 2}}``).
    With an ``input`` run, training starts from its weights (``train.transfer.init_from``)."""

    config: dict[str, Any] = Field(default_factory=dict)


def _check_train(pipeline: Any, opts: TrainOptions) -> None:
    parse_merged(pipeline, ("config.", opts.config))


@STAGES.register("train", schema=TrainOptions, accepts=("run",), produces="run", uses_base=True,
                 check=_check_train)
def train_stage(ctx: StageContext, opts: TrainOptions) -> StageOutput:
    """Train the base config (plus ``config``), optionally from an earlier run's weights."""
    extra: dict[str, Any] = {}
    if ctx.input is not None:
        extra = {"train": {"transfer": {"init_from": str(ctx.input.path("run"))}}}
    run_dir = ctx.dir / "run"
    train_in(run_dir, ctx.base(opts.config, extra), resume=ctx.resume)
    return _run_output(run_dir)


# ------------------------------------------------------------------------------- retrain
class RetrainOptions(Options):
    """Train the tuning stage's best config; ``config`` overrides it (e.g. more epochs)."""

    config: dict[str, Any] = Field(default_factory=dict)


@STAGES.register("retrain", schema=RetrainOptions, accepts=("study",), produces="run", needs_input=True,
                 uses_base=True)
def retrain_stage(ctx: StageContext, opts: RetrainOptions) -> StageOutput:
    """Retrain the best configuration a ``tune`` stage found."""
    import yaml

    tuned = ctx.input
    if "best_config" not in tuned.artifacts or not tuned.path("best_config").is_file():
        raise RunError(f"stage {tuned.name!r} has no best config to retrain (no trial completed, or none "
                       "meets the constraints)")
    best = yaml.safe_load(tuned.path("best_config").read_text())
    best.pop("search", None)
    data = deep_merge(best, opts.config)
    data["name"] = f"{ctx.pipeline.name}-{ctx.spec.name}"
    run_dir = ctx.dir / "run"
    train_in(run_dir, data, resume=ctx.resume)
    return _run_output(run_dir)


# ------------------------------------------------------------------------------- lr_find
class LRFindOptions(Options):
    """Learning-rate range test on the base config (``dlopt.tune.lr_find``)."""

    steps: int = Field(100, ge=5)
    min_lr: float = Field(1e-7, gt=0)
    max_lr: float = Field(10.0, gt=0)
    config: dict[str, Any] = Field(default_factory=dict)


def _check_lr(pipeline: Any, opts: LRFindOptions) -> None:
    for key in ("min_lr", "max_lr"):  # the schema lets .inf through; lr_find refuses it in its flags' words
        if not math.isfinite(getattr(opts, key)):
            raise ConfigError(f"{key}={getattr(opts, key)}: need a finite number > 0")
    if opts.min_lr >= opts.max_lr:
        raise ConfigError(f"min_lr={opts.min_lr:g} >= max_lr={opts.max_lr:g}; need min_lr < max_lr")
    parse_merged(pipeline, ("config.", opts.config))


@STAGES.register("lr_find", schema=LRFindOptions, accepts=(), produces="lr", uses_base=True, check=_check_lr)
def lr_find_stage(ctx: StageContext, opts: LRFindOptions) -> StageOutput:
    """Suggest a learning rate; writes ``lr_find.json`` and ``lr_find.png``."""
    from dlopt.tune import lr_find

    cfg = parse_config(ctx.base(opts.config))
    res = lr_find(cfg, run_dir=ctx.dir, min_lr=opts.min_lr, max_lr=opts.max_lr, steps=opts.steps)
    metrics = {"suggested_lr": res.suggestion, "min_loss_lr": res.min_loss_lr, "diverged": res.diverged,
               "steps": len(res.lrs)}
    # the merged config is in no file of its own: write it so the reproduce line names a real one
    config = ctx.dir / "config.yaml"
    dump_config(cfg, config)
    return StageOutput(metrics, {}, {"curve": "lr_find.json", "plot": "lr_find.png", "config": "config.yaml"},
                       [f"{shlex.join(['dlopt', 'lr-find', str(config)])} --steps {opts.steps} "
                        f"--min-lr {opts.min_lr:g} --max-lr {opts.max_lr:g}"])


# ---------------------------------------------------------------------------------- tune
class TuneOptions(Options):
    """An Optuna study over the base config (``dlopt.tune.tune``). ``search`` is the
    ``search:`` section of ``dlopt tune``; ``trials`` overrides its trial count. With an
    ``lr_find`` input, its suggestion becomes the base learning rate (``use_input_lr``)."""

    search: dict[str, Any]
    trials: int | None = Field(None, ge=1)
    config: dict[str, Any] = Field(default_factory=dict)
    use_input_lr: bool = True


def _start_lr(opts: TuneOptions, lr: float | None) -> float | None:
    """The input's suggestion when trials start from it: a ``train.optim.lr`` search axis
    overwrites the base lr in every trial, so there the suggestion is unused."""
    if lr is None or not opts.use_input_lr:
        return None
    if "train.optim.lr" in (opts.search.get("space") or {}):
        log.info("lr_find's suggestion %.3g is not used: train.optim.lr is a search axis", lr)
        return None
    return lr


def _tune_data(base: dict[str, Any], opts: TuneOptions, lr: float | None) -> dict[str, Any]:
    data = deep_merge(base, opts.config)
    if lr is not None:
        data = deep_merge(data, {"train": {"optim": {"lr": lr}}})
    data["search"] = dict(opts.search)
    return data


def _check_tune(pipeline: Any, opts: TuneOptions) -> None:
    from dlopt.config import TuneConfig
    from dlopt.tune import check_training_metrics

    cfg = parse_merged(pipeline, ("config.", opts.config), ("", {"search": dict(opts.search)}),
                       schema=TuneConfig)
    check_training_metrics(cfg)


# the study's plots (pareto_front: several objectives only)
_TUNE_PLOTS = ("optimization_history", "param_importances", "pareto_front")


# the trial budget is no part of what the study is: more trials continue it in place, and
# later stages rerun only when the best config they read changed
@STAGES.register("tune", schema=TuneOptions, accepts=("lr",), produces="study", uses_base=True,
                 check=_check_tune, budget=("trials", "search.trials", "search.timeout"),
                 budget_metrics=("trials", "complete", "pruned"))
def tune_stage(ctx: StageContext, opts: TuneOptions) -> StageOutput:
    """Run (or, after an interruption, continue) the study in the stage directory."""
    from dlopt.config import TuneConfig
    from dlopt.tune import tune

    suggested = ctx.input.metrics.get("suggested_lr") if ctx.input is not None else None
    lr = _start_lr(opts, suggested)
    cfg = parse_config(_tune_data(ctx.base(), opts, lr), TuneConfig)
    study = f"{ctx.pipeline.name}-{ctx.spec.name}"
    result = tune(cfg, study=study, study_dir=ctx.dir, trials=opts.trials)
    _require_best(ctx.dir, result.counts)
    best = result.best or {}
    metrics = {"trials": sum(result.counts.get(s, 0) for s in ("COMPLETE", "PRUNED")),
               "complete": result.counts.get("COMPLETE", 0), "pruned": result.counts.get("PRUNED", 0),
               "best_trial": best.get("trial"), "best_values": best.get("values", {}),
               "best_params": best.get("params", {}), "start_lr": lr, "suggested_lr": suggested}
    artifacts = {"trials_csv": "trials.csv"}
    if (ctx.dir / "best_config.yaml").is_file():
        artifacts["best_config"] = "best_config.yaml"
    for plot in _TUNE_PLOTS:
        if (ctx.dir / "plots" / f"{plot}.png").exists():
            artifacts[plot] = f"plots/{plot}.png"
    # the study's config (base + search:) is in no file `dlopt tune` could read: the run's
    # own line with --force redoes the study (and the stages whose input it changes)
    return StageOutput(metrics, {}, artifacts, [f"{ctx.run_command} {shlex.join(['--force', ctx.spec.name])}"])


def _require_best(study_dir: Path, counts: dict[str, int]) -> None:
    """A study without a best config has no result for later stages (retrain) to read: the
    stage fails here, naming why, instead of reporting "ran"."""
    if (study_dir / "best_config.yaml").is_file():
        return
    complete = counts.get("COMPLETE", 0)
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "none"
    why = ("no trial completed" if not complete
           else f"none of the {complete} complete trials meets search.constraints")
    raise RunError(f"the study has no best config: {why} (trials: {states}); see {study_dir / 'trials.csv'}")


# --------------------------------------------------------------------------------- sweep
class SweepOptions(Options):
    """Variants x seeds of the base config: ``variants`` maps a label to keys merged over
    the base (e.g. ``{sgd: {train: {optim: {name: sgd}}}}``); every variant trains once per
    seed (``train.seed``). ``metric`` is the test metric summarized as mean +- std."""

    variants: dict[str, dict[str, Any]] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)
    metric: str = "accuracy"


def _check_sweep(pipeline: Any, opts: SweepOptions) -> None:
    for label, over in opts.variants.items():
        parse_merged(pipeline, ("config.", opts.config), (f"variants.{label}.", over),
                     where=f"variants.{label}: ")


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


@STAGES.register("sweep", schema=SweepOptions, accepts=(), produces="sweep", uses_base=True, check=_check_sweep)
def sweep_stage(ctx: StageContext, opts: SweepOptions) -> StageOutput:
    """Train every variant with every seed; summarize the final metric and time per variant."""
    metrics: dict[str, Any] = {"metric": opts.metric, "seeds": list(opts.seeds), "variants": {}}
    timings: dict[str, Any] = {}
    artifacts: dict[str, str] = {}
    for label, over in opts.variants.items():
        finals, seconds = [], []
        for seed in opts.seeds:
            rel = f"{label}/seed-{seed}"
            run_dir = ctx.dir / rel
            data = ctx.base(opts.config, over, {"train": {"seed": seed}})
            data["name"] = f"{ctx.pipeline.name}-{ctx.spec.name}-{label}-{seed}"
            # each member is its own run: a finished one is kept, a partial one resumed
            train_in(run_dir, data, resume=ctx.resume)
            s = _read_json(run_dir / "summary.json")
            finals.append(s.get("test", {}).get(opts.metric))
            seconds.append(s.get("train_seconds"))
            artifacts[rel] = rel
        mean, std = _mean_std(finals)
        t_mean, t_std = _mean_std(seconds)
        metrics["variants"][label] = {"mean": mean, "std": std, "values": finals}
        timings[label] = {"seconds_mean": t_mean, "seconds_std": t_std}
    return StageOutput(metrics, timings, artifacts)
