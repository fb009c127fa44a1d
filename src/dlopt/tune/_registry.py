"""Samplers and pruners by name. Light on purpose: config validation imports this module, so
optuna is imported inside the factories only.

Each factory takes keyword options (checked against the optuna class's signature by
:func:`check_options`) and returns the optuna object.
"""

from __future__ import annotations

import collections.abc
import importlib
import inspect
import re
import sys
import typing
from typing import Any

from dlopt.errors import ConfigError, first_line
from dlopt.registry import Registry

__all__ = ["SAMPLERS", "PRUNERS", "build", "check_options", "optuna_class"]

#: Info keys: ``cls`` (dotted optuna class), ``multi_objective`` (supports several objectives),
#: ``needs_grid`` (every axis must be discrete), ``minimum`` (option -> lowest value allowed),
#: ``above`` (option -> a bound the value must exceed).
SAMPLERS: Registry = Registry("sampler", error=ConfigError)
#: Info keys: ``cls`` (dotted class), ``multi_objective`` (the pruner handles several objectives),
#: ``minimum``.
PRUNERS: Registry = Registry("pruner", error=ConfigError)


def optuna_class(dotted: str) -> type:
    """Import ``optuna.samplers.TPESampler``-style names (or dlopt ones)."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def check_options(registry: Registry, name: str, options: dict[str, Any], *, key: str) -> None:
    """Raise :class:`ConfigError` for an option the underlying class does not take, a value of
    the wrong type (checked against the class's annotations) or one below the entry's
    ``minimum`` (values optuna itself accepts and only fails on trial after trial)."""
    entry = registry.get(name)
    cls = optuna_class(entry.info["cls"])
    params = {
        n: p for n, p in inspect.signature(cls).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in _MANAGED
    }
    for opt, value in options.items():
        where = f"{key}.options.{opt}"
        if opt not in params:
            raise ConfigError(
                f"{where}: unknown option of {registry.kind} {name!r}; "
                f"allowed: {', '.join(sorted(params))}"
            )
        annotation = _annotation(cls, params[opt])
        if annotation is not None:
            _check_type(where, value, annotation)
        low = entry.info.get("minimum", {}).get(opt)
        if low is not None and _is_number(value) and value < low:
            raise ConfigError(f"{where}: {value!r} is too small; allowed: >= {low}")
        above = entry.info.get("above", {}).get(opt)
        if above is not None and _is_number(value) and value <= above:
            raise ConfigError(f"{where}: {value!r} is too small; allowed: > {above}")


def build(registry: Registry, name: str, **options: Any) -> Any:
    """Create a sampler or pruner; optuna's refusal of an option value is one line, exit 2."""
    try:
        return registry.create(name, **options)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"search.{registry.kind} {name!r}: {first_line(exc)}") from None


def _annotation(cls: type, param: inspect.Parameter) -> Any:
    """The parameter's annotation as a type; None where it cannot be resolved (optuna
    annotates lazily, and some names exist for type checkers only)."""
    raw = param.annotation
    if raw is inspect.Parameter.empty:
        return None
    if not isinstance(raw, str):
        return raw
    namespace = {**vars(typing), **vars(collections.abc), **vars(sys.modules[cls.__module__])}
    try:
        return eval(raw, namespace)  # noqa: S307 - an annotation string of an installed class
    except Exception:  # noqa: BLE001 - unresolvable: the value is left to optuna
        return None


def _check_type(where: str, value: Any, annotation: Any) -> None:
    from pydantic import ConfigDict, TypeAdapter, ValidationError

    try:
        adapter = TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # noqa: BLE001 - a type pydantic cannot check: left to optuna
        return
    try:
        # strict: "5" is not an int here, as optuna would compare it with one later
        adapter.validate_python(value, strict=True)
    except ValidationError:
        text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
        allowed = re.sub(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", "", text)  # drop module paths
        raise ConfigError(f"{where}: {value!r} is a {type(value).__name__}; allowed: {allowed}"
                          ) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# dlopt sets these itself (from search.sampler.seed, the space, the constraints: per trial)
_MANAGED = {"seed", "search_space", "constraints_func", "self"}


def _make(dotted: str, **kwargs: Any) -> Any:
    import warnings

    cls = optuna_class(dotted)
    with warnings.catch_warnings():
        # options such as TPE's ``group`` are flagged experimental; they are chosen on purpose
        warnings.simplefilter("ignore", category=getattr(
            importlib.import_module("optuna.exceptions"), "ExperimentalWarning"))
        return cls(**kwargs)


# ------------------------------------------------------------------------------- samplers
@SAMPLERS.register("grid", cls="optuna.samplers.GridSampler", multi_objective=True,
                   needs_grid=True)
def _grid(*, search_space: dict[str, list[Any]], seed: int | None = None, keep: Any = None,
          **options: Any) -> Any:
    from dlopt.tune._samplers import AskTellGridSampler

    return AskTellGridSampler(search_space, seed=seed, keep=keep, **options)


@SAMPLERS.register("random", cls="optuna.samplers.RandomSampler", multi_objective=True)
def _random(*, seed: int | None = None, **options: Any) -> Any:
    return _make("optuna.samplers.RandomSampler", seed=seed, **options)


@SAMPLERS.register("tpe", cls="optuna.samplers.TPESampler", multi_objective=True,
                   minimum={"n_ei_candidates": 1, "prior_weight": 0})
def _tpe(*, seed: int | None = None, **options: Any) -> Any:
    # multivariate TPE models interactions (lr x batch size); group handles conditional axes
    options.setdefault("multivariate", True)
    options.setdefault("group", options["multivariate"] is not False)  # optuna's own rule
    return _make("optuna.samplers.TPESampler", seed=seed, **options)


@SAMPLERS.register("cmaes", cls="optuna.samplers.CmaEsSampler", multi_objective=False,
                   minimum={"popsize": 1}, above={"sigma0": 0})
def _cmaes(*, seed: int | None = None, **options: Any) -> Any:
    # optuna would warn on every trial; the study names the axes CMA-ES leaves out once
    options.setdefault("warn_independent_sampling", False)
    return _make("optuna.samplers.CmaEsSampler", seed=seed, **options)


@SAMPLERS.register("qmc", cls="optuna.samplers.QMCSampler", multi_objective=True)
def _qmc(*, seed: int | None = None, **options: Any) -> Any:
    # a scrambled sequence lets several seeds give different (still low-discrepancy) points
    options.setdefault("scramble", True)
    options.setdefault("warn_asynchronous_seeding", False)
    return _make("optuna.samplers.QMCSampler", seed=seed, **options)


# -------------------------------------------------------------------------------- pruners
@PRUNERS.register("none", cls="optuna.pruners.NopPruner", multi_objective=True)
def _none(**options: Any) -> Any:
    return _make("optuna.pruners.NopPruner", **options)


@PRUNERS.register("median", cls="optuna.pruners.MedianPruner", multi_objective=False)
def _median(**options: Any) -> Any:
    options.setdefault("n_startup_trials", 4)
    options.setdefault("n_warmup_steps", 1)
    return _make("optuna.pruners.MedianPruner", **options)


@PRUNERS.register("asha", cls="optuna.pruners.SuccessiveHalvingPruner", multi_objective=False)
def _asha(**options: Any) -> Any:
    # epochs are the resource: rungs at 1, 3, 9 ... epochs by default
    options.setdefault("min_resource", 1)
    options.setdefault("reduction_factor", 3)
    return _make("optuna.pruners.SuccessiveHalvingPruner", **options)


@PRUNERS.register("successive_halving", cls="optuna.pruners.SuccessiveHalvingPruner",
                  multi_objective=False)
def _successive_halving(**options: Any) -> Any:
    return _asha(**options)


@PRUNERS.register("hyperband", cls="optuna.pruners.HyperbandPruner", multi_objective=False,
                  minimum={"min_resource": 1, "max_resource": 1, "reduction_factor": 2})
def _hyperband(**options: Any) -> Any:
    options.setdefault("min_resource", 1)
    options.setdefault("reduction_factor", 3)
    low, high = options["min_resource"], options.get("max_resource", "auto")
    if _is_number(low) and _is_number(high) and low > high:  # optuna would never stop a trial
        raise ValueError(f"min_resource={low} > max_resource={high}; need min_resource <= max_resource")
    return _make("optuna.pruners.HyperbandPruner", **options)


@PRUNERS.register("pareto", cls="dlopt.tune._pruning.ParetoMedianRule", multi_objective=True)
def _pareto(**options: Any) -> Any:
    from dlopt.tune._pruning import ParetoMedianRule

    return ParetoMedianRule(**options)
