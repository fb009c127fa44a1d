"""The pipeline YAML: a name, a shared training ``base`` and named, ordered stages.

Everything is checked before any stage runs: unknown keys, unknown stage types, each
stage's own options (its registered schema), inputs that name no stage or a stage of the
wrong kind, and cyclic references. Every problem is one line naming the stage and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from dlopt.config import _key_at, _read_yaml, apply_overrides, format_validation_error, register_schema
from dlopt.errors import ConfigError
from dlopt.pipeline._context import BaseConfigError

__all__ = ["StageSpec", "PipelineConfig", "load_pipeline", "parse_pipeline", "stage_order"]

_RESERVED = {"pipeline.yaml", "results.json", "report.html", "report.md", "report-files"}


class StageSpec(BaseModel):
    """One stage: ``name`` (unique), ``type`` (default: the name), the stage it takes its
    input from, extra ``inputs`` (e.g. the models ``bench`` compares) and the stage type's
    own options (validated against that type's schema)."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: str | None = None
    input: str | None = None
    inputs: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        # a stage's folder is <run dir>/<name>, beside the run's own files
        if v.lower() in _RESERVED:
            raise ValueError(f"{v!r} is the name of a run directory file; allowed: any other name "
                             f"(reserved: {', '.join(sorted(_RESERVED))})")
        return v

    @property
    def kind(self) -> str:
        """The stage type (registry name)."""
        return self.type or self.name

    def options(self) -> dict[str, Any]:
        """The type-specific keys (everything but name/type/input/inputs)."""
        return dict(self.model_extra or {})

    def refs(self) -> list[str]:
        """Every stage this one reads from, main input first."""
        return ([self.input] if self.input else []) + [r for r in self.inputs if r != self.input]


class PipelineConfig(BaseModel):
    """A whole pipeline file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    runs_dir: str = "runs"
    base: dict[str, Any] = Field(default_factory=dict, description="RunConfig every training stage starts from")
    stages: list[StageSpec] = Field(min_length=1)
    # the --set overrides load_pipeline applied: the run's reproduce command repeats them
    _overrides: list[str] = PrivateAttr(default_factory=list)

    @property
    def overrides(self) -> list[str]:
        """The ``key=value`` overrides applied over the file (by :func:`load_pipeline`)."""
        return list(self._overrides)

    @field_validator("stages")
    @classmethod
    def _unique(cls, v: list[StageSpec]) -> list[StageSpec]:
        seen: set[str] = set()
        for s in v:
            if s.name in seen:
                raise ValueError(f"stage name {s.name!r} is used twice; names must be unique")
            seen.add(s.name)
        return v

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)


def load_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[PipelineConfig, dict[str, Any]]:
    """Read, override (``base.train.epochs=1``, a stage's option by the stage's name:
    ``stages.prune.target=macs=0.3``) and fully validate a pipeline file.

    Returns the config and the validated options of every stage (name -> schema instance).
    """
    data = _read_yaml(path)
    for item in overrides:
        data = _override_stage(data, item) if _names_stage(data, item) else apply_overrides(data, [item])
    cfg, options = parse_pipeline(data, where=str(path))
    cfg._overrides = list(overrides)
    return cfg, options


def _names_stage(data: dict[str, Any], item: str) -> bool:
    # ``stages`` is a list: its entries are reached by their names, not by list positions
    key, sep, _ = item.partition("=")
    return bool(sep) and key.strip().startswith("stages.") and isinstance(data.get("stages"), list)


def _override_stage(data: dict[str, Any], item: str) -> dict[str, Any]:
    """``stages.NAME.KEY=VALUE`` applied to the stage named NAME (the longest matching name:
    names may hold dots), with ``dlopt train --set``'s rules below it."""
    key, sep, raw = item.partition("=")
    stages = [s for s in data["stages"] if isinstance(s, dict)]
    names = [str(s.get("name")) for s in stages]
    name, rest = _key_at(dict.fromkeys(names), key.strip().split(".")[1:])
    if name not in names:
        raise ConfigError(f"bad override {item!r}: {name!r} is not a stage; allowed: "
                          f"stages.STAGE.OPTION=value with STAGE one of {', '.join(names)}")
    if not rest:
        raise ConfigError(f"bad override {item!r}: name one of the stage's options, "
                          f"e.g. stages.{name}.OPTION=value")
    target, inner = stages[names.index(name)], ".".join(rest) + sep + raw
    try:
        changed = apply_overrides(target, [inner])
    except ConfigError as err:
        raise ConfigError(str(err).replace(repr(inner), repr(item), 1)) from None
    return {**data, "stages": [changed if s is target else s for s in data["stages"]]}


def parse_pipeline(data: dict[str, Any], *, where: str = "pipeline") -> tuple[PipelineConfig, dict[str, Any]]:
    """Validate a raw mapping; see :func:`load_pipeline`."""
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{where}: {format_validation_error(err)}") from None
    options = {s.name: _stage_options(cfg, s, i, where) for i, s in enumerate(cfg.stages)}
    _add_option_refs(cfg, options)
    _check_inputs(cfg, where)
    stage_order(cfg, where=where)
    return cfg, options


def _stage_options(cfg: PipelineConfig, spec: StageSpec, i: int, where: str) -> Any:
    from dlopt.pipeline._stages import STAGES

    if spec.kind not in STAGES:
        raise ConfigError(f"{where}: stages[{i}] {spec.name!r}: unknown stage type {spec.kind!r}; "
                          f"allowed: {', '.join(STAGES.names())}")
    entry = STAGES.get(spec.kind)
    schema: type[BaseModel] = register_schema(entry.info["schema"])  # unknown keys list the allowed
    try:
        opts = schema.model_validate(spec.options())
    except ValidationError as err:
        raise ConfigError(f"{where}: stages[{i}] {spec.name!r}: {format_validation_error(err)}") from None
    check = entry.info.get("check")
    if check is not None:
        try:
            check(cfg, opts)
        except BaseConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        except ConfigError as err:
            raise ConfigError(f"{where}: stages[{i}] {spec.name!r}: {err}") from None
    return opts


def _add_option_refs(cfg: PipelineConfig, options: dict[str, Any]) -> None:
    """Stages an option names (distill's ``student: train``) become inputs: the stage then
    runs after them and its cache key follows theirs, as for ``inputs``."""
    from dlopt.pipeline._stages import STAGES

    names = {s.name for s in cfg.stages}
    for s in cfg.stages:
        option_refs = STAGES.get(s.kind).info.get("option_refs")
        for ref in option_refs(options[s.name]) if option_refs else ():
            if ref in names and ref != s.name and ref not in s.refs():
                s.inputs.append(ref)


def _check_inputs(cfg: PipelineConfig, where: str) -> None:
    from dlopt.pipeline._stages import STAGES

    names = [s.name for s in cfg.stages]
    for i, s in enumerate(cfg.stages):
        info = STAGES.get(s.kind).info
        head = f"{where}: stages[{i}] {s.name!r}"
        if info.get("needs_input") and not s.input:
            raise ConfigError(f"{head}: stage type {s.kind!r} needs an 'input' (one of: {', '.join(names)})")
        if info.get("needs_any_input") and not s.refs():
            raise ConfigError(f"{head}: stage type {s.kind!r} needs 'inputs' (a list of: {', '.join(names)})")
        for ref in s.refs():
            if ref not in names:
                raise ConfigError(f"{head}: input {ref!r} is not a stage; allowed: {', '.join(names)}")
            if ref == s.name:
                raise ConfigError(f"{head}: a stage cannot take its own output as input")
        if s.input:
            got = STAGES.get(cfg.stage(s.input).kind).info["produces"]
            allowed = info["accepts"]
            if got not in allowed:
                raise ConfigError(f"{head}: input {s.input!r} gives a {got!r}; {s.kind} takes: {', '.join(allowed)}")
        for ref in s.inputs:
            got = STAGES.get(cfg.stage(ref).kind).info["produces"]
            allowed = info.get("accepts_many", info["accepts"])
            if got not in allowed:
                raise ConfigError(f"{head}: inputs entry {ref!r} gives a {got!r}; {s.kind} takes: {', '.join(allowed)}")


def stage_order(cfg: PipelineConfig, *, where: str = "pipeline") -> list[StageSpec]:
    """Stages in run order: file order, except that a stage runs after everything it reads.
    A cyclic reference is a ConfigError naming the cycle."""
    by_name = {s.name: s for s in cfg.stages}
    done: list[str] = []
    state: dict[str, str] = {}  # name -> "visiting" | "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            raise ConfigError(f"{where}: stages form a cycle: {' -> '.join(cycle)}")
        state[name] = "visiting"
        for ref in by_name[name].refs():
            if ref in by_name:
                visit(ref, path + [name])
        state[name] = "done"
        done.append(name)

    for s in cfg.stages:
        visit(s.name, [])
    return [by_name[n] for n in done]
