"""The metrics a study can optimize or constrain, their default directions and where each
comes from.

* ``val_<name>`` — measured each epoch on the validation split (``val_accuracy``, ``val_loss``);
  the trial's value is the run summary's (best-epoch) figure.
* ``params``, ``macs``, ``size_bytes``, ``latency_ms`` — *static*: known before training from
  the architecture alone, so a constraint on them can stop a trial before its first epoch.
* ``train_seconds``, ``epochs`` — known when the trial ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from dlopt.errors import ConfigError

if TYPE_CHECKING:
    from dlopt.config import TuneConfig

Direction = Literal["maximize", "minimize"]

STATIC_METRICS = ("params", "macs", "size_bytes", "latency_ms")
FINAL_METRICS = ("train_seconds", "epochs")

# substrings of a metric name -> the direction that improves it
_MAXIMIZE = ("accuracy", "acc", "f1", "auc", "r2", "precision", "recall", "top")
_MINIMIZE = ("loss", "mae", "mse", "rmse", "error", "params", "macs", "size_bytes",
             "latency", "seconds", "epochs")


def check_metric(metric: str, *, key: str) -> None:
    """Raise :class:`ConfigError` unless ``metric`` is something a trial can report."""
    if metric.startswith("test_"):
        raise ConfigError(
            f"{key}={metric!r}: tuning on the test split leaks it into the model choice; "
            f"use the val_ metric"
        )
    if metric == "latency_ms" and latency_function() is None:
        raise ConfigError(
            f"{key}='latency_ms': this build has no dlopt.deploy latency measurement; "
            f"use params or macs"
        )
    if metric.startswith("val_") and len(metric) > 4:
        return
    if metric in STATIC_METRICS or metric in FINAL_METRICS:
        return
    allowed = ["val_<metric>", *STATIC_METRICS, *FINAL_METRICS]
    raise ConfigError(f"{key}={metric!r}: unknown metric; allowed: {', '.join(allowed)}")


def check_training_metrics(cfg: "TuneConfig") -> None:
    """Raise :class:`ConfigError` for a ``val_`` objective or constraint that no training run
    of ``cfg`` reports: any, when no trial has a validation split (``data.val_fraction: 0``
    without ``train.cv``, and no axis drawing either); else a typo (``val_acc``) or the other
    task's metric (``val_r2`` on mnist). :func:`check_metric` takes any ``val_<name>`` (a
    custom objective may report it); this is the rule for trials that are dlopt training runs
    (``dlopt tune``, a pipeline's ``tune`` stage), checked before the first trial instead of
    after it."""
    search = cfg.search
    allowed, run = _training_val_metrics(cfg.data.name)
    has_val = _some_trial_validates(cfg)
    for key, specs in (("objectives", search.objectives), ("constraints", search.constraints)):
        for i, spec in enumerate(specs):
            if not spec.metric.startswith("val_"):
                continue
            where = f"search.{key}[{i}].metric={spec.metric!r}"
            if not has_val:
                raise ConfigError(f"{where}: the runs have no validation split (data.val_fraction: "
                                  f"0), so they report no val_ metric; set data.val_fraction > 0 "
                                  f"(e.g. 0.1) or train.cv (folds)")
            if spec.metric not in allowed:
                every = ", ".join([*allowed, *STATIC_METRICS, *FINAL_METRICS])
                raise ConfigError(f"{where}: {run} reports no such validation metric; allowed: {every}")


def _some_trial_validates(cfg: "TuneConfig") -> bool:
    """Whether a trial can have a validation split: ``data.val_fraction`` > 0 or ``train.cv``
    (cv folds carve their own), as the config sets them or as an axis on either can draw."""
    space = cfg.search.space
    fractions = _key_values(space.get("data.val_fraction"), cfg.data.val_fraction)
    folds = _key_values(space.get("train.cv"), cfg.train.cv)
    return any(f for f in fractions) or any(c is not None for c in folds)


def _key_values(spec: Any, config_value: Any) -> list[Any]:
    """The values a key takes over the trials: the config's where no axis sets it (no axis, or
    one its ``when:`` switches off), and the axis's choices or the top of its range."""
    if spec is None:
        return [config_value]
    drawn = list(spec.choices or []) if spec.type == "categorical" else [spec.high]
    return drawn + ([config_value] if spec.when else [])


def _training_val_metrics(dataset: str) -> tuple[list[str], str]:
    """The ``val_`` metrics a training run on ``dataset`` reports (its task's
    :func:`~dlopt.train.metrics.validation_metrics`) and the run's description. A built-in
    set's task is known up front; a csv or npz file's comes from its labels (a csv's whole
    target column), read by the trials, so every task's metrics are allowed there."""
    from dlopt.data import DATASETS
    from dlopt.train.metrics import DEFAULT_METRICS, validation_metrics

    task = DATASETS.get(dataset).info.get("task") if dataset in DATASETS else None
    tasks = [task] if task in DEFAULT_METRICS else list(DEFAULT_METRICS)
    names = dict.fromkeys(m for t in tasks for m in validation_metrics(t))
    run = f"a {task} run (data {dataset})" if len(tasks) == 1 else "a training run"
    return [f"val_{n}" for n in names], run


def default_direction(metric: str) -> Direction | None:
    """The direction that improves ``metric``, or None when the name does not say."""
    name = metric.removeprefix("val_")
    if any(s in name for s in _MINIMIZE):
        return "minimize"
    if any(s in name for s in _MAXIMIZE):
        return "maximize"
    return None


def resolve_direction(metric: str, direction: Direction | None, *, key: str) -> Direction:
    """``direction`` if given, else the metric's default; unknown -> :class:`ConfigError`."""
    resolved = direction or default_direction(metric)
    if resolved is None:
        raise ConfigError(f"{key}.direction is needed for metric {metric!r}: maximize or minimize")
    return resolved


def is_static(metric: str) -> bool:
    """True for metrics known from the architecture before training."""
    return metric in STATIC_METRICS


def latency_function() -> Callable[..., float] | None:
    """A latency measurement backed by dlopt.deploy's benchmark, or None without it."""
    try:
        from dlopt.deploy import Contestant, benchmark, zoo_source  # noqa: F401
    except ImportError:
        return None
    return _latency_ms


# architecture key -> measured p50 ms: trials that differ only in training knobs (lr, decay,
# batch size) share one measurement instead of paying a fresh benchmark process each
_LATENCY_CACHE: dict[str, float] = {}


def _latency_ms(model: Any, input_shape: tuple[int, ...], cfg: Any) -> float:
    """Median batch-1 latency of ``model``'s architecture: PyTorch eager, 1 thread, measured
    by dlopt.deploy's benchmark in a fresh process (weights do not change dense latency, so
    the untrained model stands in for the trained one; one measurement per architecture)."""
    import json
    import tempfile
    from pathlib import Path

    import numpy as np

    from dlopt.deploy import Contestant, benchmark, zoo_source

    num_classes = _out_features(model)
    key = json.dumps([cfg.model.name, cfg.model.options(), list(input_shape), num_classes],
                     sort_keys=True, default=str)
    if key in _LATENCY_CACHE:
        return _LATENCY_CACHE[key]
    with tempfile.TemporaryDirectory(prefix="dlopt-latency-") as tmp:
        # the benchmark worker rebuilds the zoo model from this record and its weights
        source = zoo_source(model, cfg.model.name, input_shape=input_shape,
                            num_classes=num_classes, weights=Path(tmp) / "w.safetensors",
                            options=cfg.model.options())
        x = np.random.default_rng(0).random((8, *input_shape), dtype=np.float32)
        report = benchmark([Contestant.pytorch(source)], x, batch_sizes=(1,), threads=1,
                           min_runs=20, min_seconds=0.3, warmup_seconds=0.1, max_seconds=3.0)
    (entry,) = report["contestants"]["pytorch"].values()
    _LATENCY_CACHE[key] = float(entry["p50_ms"])
    return _LATENCY_CACHE[key]


def _out_features(model: Any) -> int:
    # the head is the last Linear layer of every zoo model
    last = [m for m in model.modules() if hasattr(m, "out_features")]
    return int(last[-1].out_features)


def metrics_from_result(summary: Mapping[str, Any], history: list[Mapping[str, Any]]) -> dict[str, float]:
    """Flatten a run summary into ``val_<m>``, ``params``, ``macs``, ``train_seconds``, ``epochs``.

    ``val_<m>`` comes from the summary's ``val`` object (the best epoch's figures); a metric
    missing there falls back to the last epoch of the history.
    """
    out: dict[str, float] = {}
    for row in history[-1:]:
        out.update({k: float(v) for k, v in row.items() if k.startswith("val_") and _number(v)})
    val = summary.get("val") or {}
    if isinstance(val, Mapping):
        for k, v in val.items():
            if _number(v):
                out[k if k.startswith("val_") else f"val_{k}"] = float(v)
    for k in ("params", "macs", "size_bytes", "train_seconds"):
        if _number(summary.get(k)):
            out[k] = float(summary[k])
    out["epochs"] = float(len(history) or summary.get("epochs") or 0)
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
