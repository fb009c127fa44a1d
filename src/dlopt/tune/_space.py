"""Search spaces over training-config keys: validation, sampling, grids, and applying a
trial's parameters to the base config.

An axis is named by its config path (``train.optim.lr``); that path is also the optuna
parameter name, so dashboards and ``trials.csv`` show the key users wrote.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from dlopt.errors import ConfigError, DloptError

if TYPE_CHECKING:
    import optuna

    from dlopt.config import RunConfig, SearchParam, TuneConfig

__all__ = ["Axis", "SearchSpace", "check_search", "check_search_shape", "set_path", "get_path"]

_MAX_GRID_AXIS = 100  # an int axis with more values than this needs an explicit grid
_SCALARS = (str, int, float, bool, type(None))
_MISSING = object()


# ---------------------------------------------------------------------------- dict paths
def get_path(data: Mapping[str, Any], path: str, default: Any = _MISSING) -> Any:
    """The value at ``a.b.c`` in nested mappings (``default`` or KeyError when absent)."""
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is _MISSING:
                raise KeyError(path)
            return default
        node = node[part]
    return node


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts, creating sections; a non-section on the way is an error."""
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"search.space.{path}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


# ---------------------------------------------------------------------------------- axes
@dataclass(frozen=True)
class Axis:
    """One search axis: a config path and its :class:`~dlopt.config.SearchParam`."""

    path: str
    spec: "SearchParam"

    @property
    def key(self) -> str:
        return f"search.space.{self.path}"

    def suggest(self, trial: "optuna.Trial") -> Any:
        """Ask ``trial`` for this axis's value."""
        s = self.spec
        if s.type == "categorical":
            return trial.suggest_categorical(self.path, s.choices)
        if s.type == "int":
            return trial.suggest_int(self.path, int(s.low), int(s.high), step=int(s.step or 1),
                                     log=s.log)
        return trial.suggest_float(self.path, s.low, s.high, step=s.step, log=s.log)

    def distribution(self) -> Any:
        """The optuna distribution :meth:`suggest` records for this axis."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        s = self.spec
        if s.type == "categorical":
            return CategoricalDistribution(s.choices)
        if s.type == "int":
            return IntDistribution(int(s.low), int(s.high), step=int(s.step or 1), log=s.log)
        return FloatDistribution(s.low, s.high, step=s.step, log=s.log)

    def grid_values(self) -> list[Any]:
        """The values the grid sampler visits on this axis."""
        s = self.spec
        if isinstance(s.grid, list):
            return self._on_step(list(s.grid))
        if s.type == "categorical":
            return list(s.choices or [])
        if isinstance(s.grid, int):
            points = _spaced(s.low, s.high, s.grid, log=s.log, integer=s.type == "int")
            return _snapped(points, s.low, s.high, s.step) if s.step else points
        if s.type == "int":
            values = list(range(int(s.low), int(s.high) + 1, int(s.step or 1)))
            if len(values) > _MAX_GRID_AXIS:
                raise ConfigError(
                    f"{self.key}: {len(values)} grid values; give 'grid: N' or a list"
                )
            return values
        if s.step is None:
            raise ConfigError(
                f"{self.key}: the grid sampler needs 'step' or 'grid' (a list or a count) "
                f"on a float axis"
            )
        n = int(math.floor((s.high - s.low) / s.step + 1e-9)) + 1
        return [round(s.low + i * s.step, 12) for i in range(n)]

    def _on_step(self, values: list[Any]) -> list[Any]:
        """Grid values an axis with a ``step`` can hold (optuna stores them under that step)."""
        s = self.spec
        if s.step and s.type != "categorical":
            off = [v for v in values if not _on_step(v, s.low, s.step)]
            if off:
                raise ConfigError(f"{self.key}: grid value {off[0]!r} is not low + k * step "
                                  f"(low={s.low}, step={s.step}); allowed: values on that step")
        return values

    def candidates(self) -> list[Any]:
        """Values that must all be valid config values (bounds, choices, grid points)."""
        s = self.spec
        values = list(s.choices or []) if s.type == "categorical" else [s.low, s.high]
        if s.type == "int":
            values = [int(v) for v in values]
        if s.type == "float" and s.high > s.low:
            # a float axis samples fractions: an integer key must refuse it now, not per trial
            mid = (s.low + s.high) / 2
            values.append(mid + min(0.5, (s.high - s.low) / 4) if float(mid).is_integer() else mid)
        if isinstance(s.grid, list):
            values += s.grid
        return values


def _on_step(value: float, low: float, step: float) -> bool:
    """Whether ``value`` is ``low + k * step`` (to float rounding)."""
    return abs((value - low) / step - round((value - low) / step)) <= 1e-9


def _snapped(points: list[Any], low: float, high: float, step: float) -> list[Any]:
    """Evenly spaced points moved to the axis's step (16..128 step 16 by 3: 16, 64 or 80, 128,
    not 72), duplicates dropped, order kept."""
    out: list[Any] = []
    top = math.floor((high - low) / step + 1e-9)  # the last step inside the range
    for p in points:
        v = low + min(round((p - low) / step), top) * step
        v = type(p)(round(v, 12)) if isinstance(p, float) else int(round(v))
        if v not in out:
            out.append(v)
    return out


def _spaced(low: float, high: float, n: int, *, log: bool, integer: bool) -> list[Any]:
    if n == 1:  # numpy.linspace's convention: the low end
        return [int(round(low)) if integer else low]
    if log:
        a, b = math.log(low), math.log(high)
        points = [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
    else:
        points = [low + (high - low) * i / (n - 1) for i in range(n)]
    if integer:
        return sorted({int(round(p)) for p in points})
    # exact bounds (exp/log round trips drift by an ulp and would leave the range)
    points[0], points[-1] = low, high
    return [float(f"{p:.6g}") if 0 < i < n - 1 else p for i, p in enumerate(points)]


# --------------------------------------------------------------------------------- space
class SearchSpace:
    """Ordered axes: an axis comes after the axes its ``when`` condition reads."""

    def __init__(self, space: Mapping[str, "SearchParam"]) -> None:
        self.axes: list[Axis] = _ordered([Axis(p, s) for p, s in space.items()])

    def sample(self, trial: "optuna.Trial", base: Mapping[str, Any]) -> dict[str, Any]:
        """Suggest every active axis; inactive (conditional) axes are left out."""
        params: dict[str, Any] = {}
        for axis in self.axes:
            if _active(axis, params, base):
                params[axis.path] = axis.suggest(trial)
        return params

    def grid(self) -> dict[str, list[Any]]:
        """Grid-sampler search space: path -> values (conditional axes included)."""
        return {a.path: a.grid_values() for a in self.axes}

    def grid_filter(self, base: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bool]:
        """Accepts one grid point per distinct trial: an axis its condition switches off (in
        that point, or in ``base`` for keys outside the space) must hold its first value."""
        first = {path: values[0] for path, values in self.grid().items()}

        def keep(point: Mapping[str, Any]) -> bool:
            active: dict[str, Any] = {}
            for axis in self.axes:  # conditions come before the axes they switch
                if _active(axis, active, base):
                    active[axis.path] = point[axis.path]
                elif point[axis.path] != first[axis.path]:
                    return False
            return True

        return keep

    @staticmethod
    def apply(base: "RunConfig", params: Mapping[str, Any]) -> "RunConfig":
        """``base`` (without its ``search`` section) with ``params`` (path -> value) set."""
        from dlopt.config import RunConfig, parse_config

        data = base.model_dump(mode="json", exclude={"search"})
        for path, value in params.items():
            set_path(data, path, value)
        return parse_config(data, RunConfig)


def _active(axis: Axis, params: Mapping[str, Any], base: Mapping[str, Any]) -> bool:
    model = params.get("model.name")  # a model option's default is the drawn model's
    for path, want in axis.spec.when.items():
        have = params[path] if path in params else _config_value(base, path, None, model=model)
        if not _holds(have, want):
            return False
    return True


def _wanted(want: Any) -> list[Any]:
    """The values a ``when:`` entry accepts: its list, or its one value."""
    return want if isinstance(want, list) and want else [want]


def _holds(have: Any, want: Any) -> bool:
    """Whether a ``when:`` entry (a value, or a list of values) accepts ``have``."""
    return have in _wanted(want)


def _config_value(base: Mapping[str, Any], path: str, default: Any = _MISSING, *,
                  model: str | None = None) -> Any:
    """``path``'s value in a trial's config: as ``base`` holds it, else (a model option the
    config leaves out, ``model.width``) the default of the trial's model (``model``, the one a
    ``model.name`` axis drew, else the config's), which the trial builds with."""
    try:
        return get_path(base, path)
    except KeyError:
        value = _model_default(get_path(base, "model.name", None) if model is None else model, path)
    if value is _MISSING and default is _MISSING:
        raise KeyError(path) from None
    return default if value is _MISSING else value


def _config_values(axis: Axis, path: str, base: Mapping[str, Any],
                   space: Mapping[str, "SearchParam"]) -> list[tuple[Any, Any]]:
    """``(model, value)`` for each value ``path`` (a key no axis sets in those trials) can have
    in a trial that samples ``axis``: ``(None, value)`` where the config sets it, else a model
    option's default for each model such trials build (a ``model.name`` axis draws several)."""
    try:
        return [(None, get_path(base, path))]
    except KeyError:
        pass
    names = _names_with(axis, "model.name", base, space) if path.startswith("model.") else []
    found = [(name, _model_default(name, path)) for name in names]
    return [(name, value) for name, value in found if value is not _MISSING]


def _model_default(name: Any, path: str) -> Any:
    """Model ``name``'s default for ``path`` (``model.OPTION``), or _MISSING."""
    from dlopt.models import model_options

    section, _, option = path.partition(".")
    if section != "model" or "." in option or option == "name" or not isinstance(name, str):
        return _MISSING
    try:
        return model_options(name).get(option, _MISSING)
    except DloptError:  # a custom model: no registry entry to read defaults from
        return _MISSING


def _ordered(axes: list[Axis]) -> list[Axis]:
    by_path = {a.path: a for a in axes}
    done: list[Axis] = []
    state: dict[str, str] = {}

    def visit(a: Axis) -> None:
        if state.get(a.path) == "done":
            return
        if state.get(a.path) == "busy":
            raise ConfigError(f"{a.key}.when: conditions form a cycle through {a.path!r}")
        state[a.path] = "busy"
        for dep in _reads(a, by_path):
            visit(by_path[dep])
        state[a.path] = "done"
        done.append(a)

    for a in axes:
        visit(a)
    return done


def _reads(axis: Axis, by_path: Mapping[str, Axis]) -> list[str]:
    """The axes ``axis``'s condition reads: its ``when`` keys, and the ``model.name`` axis for a
    model option (whose default depends on the model drawn)."""
    deps = [dep for dep in axis.spec.when if dep in by_path]
    if axis.path != "model.name" and "model.name" in by_path \
            and any(dep.startswith("model.") and dep not in by_path for dep in axis.spec.when):
        deps.append("model.name")
    return deps


# ---------------------------------------------------------------------------- validation
_SPACE_HELP = ("space: a mapping of config keys to axes, e.g. space: {train.optim.lr: {type: "
               "float, low: 1.0e-4, high: 0.1, log: true}, train.optim.name: [adam, sgd]}")


def check_search_shape(search: Any) -> None:
    """The raw ``search:`` section holds a non-empty ``space`` of axes (one-line ConfigError).

    Runs before the schema, whose words ("search.space: Field required", "search.space.train:
    unknown key 'optim'" for an axis split into sections) do not say what a space holds."""
    from dlopt.config import SearchConfig

    if isinstance(search, SearchConfig):  # built, so checked already
        return
    if not isinstance(search, Mapping):
        raise ConfigError(f"search: need a mapping, got {_kind(search)}; a search section "
                          f"needs {_SPACE_HELP}")
    space = search.get("space", _MISSING)
    if not isinstance(space, Mapping) or not space:
        what = "missing" if space is _MISSING else "empty" if isinstance(space, Mapping) \
            else f"got {_kind(space)}"
        raise ConfigError(f"search.space: {what}; a search section needs {_SPACE_HELP}")
    for key, value in space.items():
        _check_entry(str(key), value, space)


def _check_entry(key: str, value: Any, space: Mapping[str, Any]) -> None:
    if _is_axis(value):
        return  # SearchParam checks its keys and values
    path, node = key, value
    while isinstance(node, Mapping) and node and not _is_axis(node):
        name, node = next(iter(node.items()))  # YAML nesting or a --set made sections
        path = f"{path}.{name}"
    if path == key:
        raise ConfigError(f"search.space.{key}: {_yaml(value)} is not an axis; give a list of "
                          f"choices or a mapping {{type: float|int|categorical, ...}}")
    axes = ", ".join(k for k, v in space.items() if _is_axis(v)) or "none"
    raise ConfigError(f"search.space: no axis {path!r}; axes: {axes} (an axis is one dotted "
                      f"key, e.g. train.optim.lr: {{...}}; --set changes an axis of the file, "
                      f"it adds none)")


def _is_axis(value: Any) -> bool:
    """A list of choices, an axis mapping (one with an axis's keys) or a built axis."""
    from dlopt.config import SearchParam

    return isinstance(value, (list, SearchParam)) or (
        isinstance(value, Mapping) and bool(set(value) & set(SearchParam.model_fields)))


def _kind(value: Any) -> str:
    """What a YAML value is, in YAML's words."""
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def check_search(cfg: "TuneConfig") -> None:
    """Validate ``cfg.search`` against the training config it tunes (one-line ConfigError)."""
    from dlopt.tune._metrics import check_metric, resolve_direction
    from dlopt.tune._registry import PRUNERS, SAMPLERS, build, check_options

    search = cfg.search
    base = cfg.model_dump(mode="json", exclude={"search"})
    space = SearchSpace(search.space)
    for axis in space.axes:
        _check_axis(axis, base, search.space)
    check_options(SAMPLERS, search.sampler.name, search.sampler.options, key="search.sampler")
    if search.sampler.name == "cmaes" and search.sampler.options.get("x0") is not None:
        _check_x0(space, search.sampler.options["x0"])
    if SAMPLERS.get(search.sampler.name).info.get("needs_grid"):
        _check_grid_conditions(space, space.grid(), base)  # grid() raises for continuous axes
    for axis in space.axes:  # after the checks of what the axes hold, which say more
        _check_used(axis, base, search.space)
    for i, obj in enumerate(search.objectives):
        check_metric(obj.metric, key=f"search.objectives[{i}].metric")
        resolve_direction(obj.metric, obj.direction, key=f"search.objectives[{i}]")
    for i, con in enumerate(search.constraints):
        check_metric(con.metric, key=f"search.constraints[{i}].metric")
    metrics = [o.metric for o in search.objectives]
    if len(set(metrics)) != len(metrics):
        raise ConfigError(f"search.objectives: {metrics} names a metric twice")
    multi = len(metrics) > 1
    if multi and not SAMPLERS.get(search.sampler.name).info.get("multi_objective"):
        raise ConfigError(
            f"search.sampler.name={search.sampler.name!r} handles one objective; for "
            f"{len(metrics)} use tpe, random, qmc or grid"
        )
    pruner = pruner_name(search.pruner.name, multi=multi)
    info = PRUNERS.get(pruner).info
    if multi and not info.get("multi_objective"):
        raise ConfigError(
            f"search.pruner.name={pruner!r} handles one objective; for {len(metrics)} "
            f"use pareto or none"
        )
    if not multi and pruner == "pareto":
        raise ConfigError("search.pruner.name='pareto' needs 2 or more objectives; use median, "
                          "asha, hyperband or none")
    check_options(PRUNERS, pruner, search.pruner.options, key="search.pruner")
    # values optuna refuses when built (qmc_type, min_resource, ...): now, not after the study
    # is created in the storage; its warnings (a deprecated option) come once, from the study
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build(PRUNERS, pruner, **search.pruner.options)
        if not SAMPLERS.get(search.sampler.name).info.get("needs_grid"):
            build(SAMPLERS, search.sampler.name, seed=search.sampler.seed,
                  **search.sampler.options)


def pruner_name(name: str, *, multi: bool) -> str:
    """Resolve ``auto``: median for one objective, dlopt's pareto rule for several."""
    if name != "auto":
        return name
    return "pareto" if multi else "median"


def _check_axis(axis: Axis, base: dict[str, Any], space: Mapping[str, Any]) -> None:
    first = axis.path.split(".")[0]
    if first in ("search", "name") or any(not p for p in axis.path.split(".")):
        raise ConfigError(f"{axis.key}: not a tunable key; use a data., model. or train. key")
    s = axis.spec
    for v in s.choices or []:
        if not isinstance(v, _SCALARS):
            raise ConfigError(
                f"{axis.key}: choice {v!r} is not a string, number, boolean or null"
            )
    _check_distinct(f"{axis.key}.choices", s.choices or [])
    if isinstance(s.grid, list):
        _check_grid_list(axis)
    context = dict(base)
    for dep, want in s.when.items():
        wanted = _wanted(want)
        if dep in space:
            _check_reachable(axis, dep, wanted, base, space)
        elif not _config_values(axis, dep, base, space):
            raise ConfigError(f"{axis.key}.when: unknown key {dep!r}; use a config key or a search axis")
        for w in wanted[1:]:  # each listed value must be one the key can take (a typo never matches)
            _check_listed(axis, dep, w, base, space)
        if dep in space:
            context = _with(context, dep, wanted[0])
        else:
            _check_fixed_condition(axis, dep, want, base, space)
    for value in axis.candidates():
        _check_value(axis, context, value)


def _check_used(axis: Axis, base: Mapping[str, Any], space: Mapping[str, "SearchParam"]) -> None:
    """An option of the optimizer/schedule/loss (``train.optim.momentum``) must be used by every
    choice a trial can pair it with: else those trials differ only in a value nothing reads."""
    from dlopt.config import option_users

    parts = axis.path.split(".")
    if len(parts) != 3 or parts[0] != "train" or parts[1] not in ("optim", "schedule", "loss") \
            or parts[2] == "name":
        return
    name_key = f"train.{parts[1]}.name"
    for name in _names_with(axis, name_key, base, space):
        takers = option_users(parts[1], name, parts[2])
        if takers:
            raise ConfigError(f"{axis.key}: {name_key}={_yaml(name)} does not use {parts[2]} "
                              f"(its trials would ignore the value); {_used_hint(name_key, takers, space)}")


def _names_with(axis: Axis, name_key: str, base: Mapping[str, Any],
                space: Mapping[str, "SearchParam"]) -> list[Any]:
    """The values ``name_key`` can have in a trial that samples ``axis``."""
    if name_key not in space:
        return [get_path(base, name_key)]
    if name_key in axis.spec.when:
        return _wanted(axis.spec.when[name_key])
    spec = space[name_key]
    own = [get_path(base, name_key)] if spec.when else []  # a switched-off axis keeps the config's
    return own + [c for c in spec.choices or [] if c not in own]


def _used_hint(name_key: str, takers: list[str], space: Mapping[str, "SearchParam"]) -> str:
    """How to pair the axis only with choices that use it."""
    if name_key not in space:
        return f"it applies to {', '.join(takers)}: set {name_key} to one of those, or drop the axis"
    drawn = [c for c in space[name_key].choices or [] if c in takers]
    when = f"when: {{{name_key}: [{', '.join(map(str, drawn or takers[:1]))}]}}"
    if drawn:
        return f"sample it only with those that do: {when}"
    return (f"it applies to {', '.join(takers)}: add one to the {name_key} axis and give this "
            f"axis {when}, or drop the axis")


def _check_listed(axis: Axis, dep: str, value: Any, base: dict[str, Any],
                  space: Mapping[str, "SearchParam"]) -> None:
    """``value``, listed in a condition on ``dep``, must be one ``dep`` can take: for a model
    option, under some model the trials build that has the option."""
    names = [name for name, _ in _config_values(axis, dep, base, space) if name is not None]
    errors = []
    for context in [_with(base, "model.name", name) for name in names] or [base]:
        try:
            _check_value(axis, _with(context, dep, value), axis.candidates()[0], what=f"{axis.key}.when")
        except ConfigError as err:
            errors.append(err)
        else:
            return
    raise errors[0]


def _check_fixed_condition(axis: Axis, dep: str, want: Any, base: Mapping[str, Any],
                           space: Mapping[str, "SearchParam"]) -> None:
    """A condition on a key no axis changes holds in every trial or in none (or, for a model
    option left at its default, in the trials of some models or of none): in none, the axis
    would never be sampled, without a word."""
    found = _config_values(axis, dep, base, space)
    section = next((v for _, v in found if isinstance(v, Mapping)), None)
    if section is not None:  # its whole dump would be the message
        raise ConfigError(f"{axis.key}.when: {dep} is a section; a condition reads one key, "
                          f"e.g. {dep}.{next(iter(section), 'name')}")
    if any(_holds(have, want) for _, have in found):
        return
    asked = " or ".join(map(_yaml, _wanted(want)))
    if found and (found[0][0] is None or "model.name" not in space):  # the config's value, or its one model's
        raise ConfigError(f"{axis.key}.when: {dep} is fixed at {_yaml(found[0][1])} (not a search "
                          f"axis), never {asked}, so the axis would never be sampled; set "
                          f"{dep} to that value, make it an axis, or drop the condition")
    have = dict(found)
    defaults = ", ".join(f"{name}: {_yaml(have[name]) if name in have else 'no such option'}"
                         for name in _names_with(axis, "model.name", base, space))
    raise ConfigError(f"{axis.key}.when: {dep} is not a search axis and is left at the default of "
                      f"the model drawn ({defaults}), never {asked}, so the axis would never be "
                      f"sampled; set {dep} to that value, make it an axis, or drop the condition")


def _check_grid_list(axis: Axis) -> None:
    """Grid values: each once, and each one the axis can hold (optuna fails every trial that
    draws another)."""
    s, key = axis.spec, f"{axis.key}.grid"
    _check_distinct(key, s.grid)
    for v in s.grid:
        if s.type == "categorical" and v not in s.choices:
            raise ConfigError(f"{key}: {_yaml(v)} is not one of its choices; allowed: {_draws(s)}")
        if s.type != "categorical" and not _number_in(v, s):
            raise ConfigError(f"{key}: {_yaml(v)} is not a number in [{s.low:g}, {s.high:g}]")


def _number_in(value: Any, spec: "SearchParam") -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) \
        and spec.low <= value <= spec.high


def _check_x0(space: SearchSpace, x0: Any) -> None:
    """CMA-ES starts at ``x0``: it needs a value inside the bounds of every axis CMA-ES models
    (float and int axes every trial has), else optuna fails every trial after the start-up."""
    key = "search.sampler.options.x0"
    modelled = {a.path: a.spec for a in space.axes
                if a.spec.type != "categorical" and not a.spec.when and a.spec.low < a.spec.high}
    names = ", ".join(modelled) or "none"
    if not isinstance(x0, Mapping):
        raise ConfigError(f"{key}: need a mapping axis -> start value for {names}")
    for path, value in x0.items():
        if path not in modelled:
            raise ConfigError(f"{key}: {path!r} is not an axis CMA-ES models; allowed: {names}")
        spec = modelled[path]
        if not _number_in(value, spec):
            raise ConfigError(f"{key}.{path}: {_yaml(value)} is not a number in "
                              f"[{spec.low:g}, {spec.high:g}]")
    missing = [p for p in modelled if p not in x0]
    if missing:
        raise ConfigError(f"{key}: no start value for {', '.join(missing)}; give one for each "
                          f"of {names}")


def _check_distinct(key: str, values: list[Any]) -> None:
    """Python (so optuna, which stores a choice by its index) takes 1, 1.0 and true for one
    value: the later entry could never be drawn."""
    for i, v in enumerate(values):
        same = next((u for u in values[:i] if u == v), _MISSING)
        if same is not _MISSING:
            what = "listed twice" if repr(same) == repr(v) else \
                f"equal to {_yaml(same)} in Python (1 == 1.0 == true, 0 == 0.0 == false)"
            raise ConfigError(f"{key}: {_yaml(v)} is {what}; list each value once")


def _yaml(value: Any) -> str:
    """A choice as the YAML file spells it (true, null), so the message matches the file."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _check_reachable(axis: Axis, dep: str, wanted: list[Any], base: Mapping[str, Any],
                     space: Mapping[str, "SearchParam"]) -> None:
    """Each value a condition lists must be one the axis it reads can draw (or, for a
    conditional axis that is switched off, the config's own value): else it never matches."""
    spec = space[dep]
    own = _switched_off(axis, dep, base, space)
    for w in wanted:
        if w not in own and not _can_draw(spec, w):
            raise ConfigError(f"{axis.key}.when: {dep} never takes {_yaml(w)}; its axis "
                              f"draws {_draws(spec)}")


def _check_grid_conditions(space: SearchSpace, grid: Mapping[str, list[Any]],
                           base: Mapping[str, Any]) -> None:
    """The grid sampler draws only grid values: a condition on another value never holds."""
    specs = {a.path: a.spec for a in space.axes}
    for axis in space.axes:
        for dep, want in axis.spec.when.items():
            if dep not in grid:
                continue
            own = _switched_off(axis, dep, base, specs)
            for w in _wanted(want):
                if w not in own and w not in grid[dep]:
                    raise ConfigError(f"{axis.key}.when: the grid sampler never gives {dep} "
                                      f"{_yaml(w)}; its grid: {', '.join(map(_yaml, grid[dep]))}")


def _switched_off(axis: Axis, dep: str, base: Mapping[str, Any],
                  space: Mapping[str, "SearchParam"]) -> list[Any]:
    """The values ``dep``'s axis leaves in a trial that samples ``axis`` when its own condition
    switches it off (the config's, or the drawn model's default); none for an unconditional axis."""
    if not space[dep].when:
        return []
    return [value for _, value in _config_values(axis, dep, base, space)] or [None]


def _draws(spec: "SearchParam") -> str:
    if spec.type == "categorical":
        return ", ".join(_yaml(c) for c in spec.choices or [])
    step = f" on step {spec.step:g}" if spec.step else ""
    return f"{spec.type} values in [{spec.low:g}, {spec.high:g}]{step}"


def _can_draw(spec: "SearchParam", value: Any) -> bool:
    if spec.type == "categorical":
        return value in (spec.choices or [])
    if not _number_in(value, spec):
        return False
    step = spec.step or (1 if spec.type == "int" else None)
    return step is None or _on_step(value, spec.low, step)


def _with(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(data)
    set_path(out, path, value)
    return out


def _check_value(axis: Axis, base: dict[str, Any], value: Any, *, what: str | None = None) -> None:
    from dlopt.config import RunConfig, parse_config

    try:
        parse_config(_with(base, axis.path, value), RunConfig)
    except DloptError as exc:
        raise ConfigError(f"{what or axis.key}: {exc}") from None

