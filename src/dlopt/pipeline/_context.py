"""What a stage function sees and returns, and the stage registry.

A stage is a plain function ``fn(ctx: StageContext, opts) -> StageOutput`` registered once::

    @STAGES.register("export", schema=ExportOptions, accepts=("run",), produces="onnx",
                     needs_input=True)

Registry info: ``schema`` (pydantic model of the stage's own YAML keys), ``accepts`` (kinds
of output its ``input`` may be), ``accepts_many`` (kinds allowed in ``inputs``),
``produces`` (the kind it outputs: ``run`` = a training run directory, ``onnx``, ``lr``,
``study``, ``sweep``, ``bench``, ``check``), ``needs_input``, ``uses_base`` (the pipeline's
``base`` is part of its cache key), ``check`` (extra validation before anything runs),
``option_refs`` (``opts -> names``: stage names an option refers to, added to ``inputs``),
``budget`` (dotted options that only say how long it works, e.g. a study's ``trials``: a
change continues the stage in place) and ``budget_metrics`` (metrics that grow with the budget,
left out of the digest later stages' keys read).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from dlopt.errors import ConfigError
from dlopt.registry import Registry

if TYPE_CHECKING:
    from dlopt.pipeline._schema import PipelineConfig, StageSpec

__all__ = ["STAGES", "BaseConfigError", "Options", "StageContext", "StageOutput", "StageRecord", "deep_merge",
           "parse_merged"]

STAGES: Registry[Any] = Registry("stage type")


class Options(BaseModel):
    """Base of every stage's option schema: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class StageOutput:
    """What a stage returns. ``metrics`` are deterministic results (accuracy, params, sizes,
    suggestions); ``timings`` are wall-clock figures (seconds, latencies, speedups);
    ``artifacts`` maps names to paths relative to the stage directory (``run``, ``onnx``);
    a file of another stage is ``../<stage>/...`` (:meth:`StageContext.artifact`)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)


@dataclass
class StageRecord:
    """A finished stage as stored in ``<stage>/stage.json``."""

    name: str
    type: str
    key: str
    dir: Path
    produces: str
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "ran"
    digest: str = ""  # of the metrics and model files the stage produced (see output_id)

    @property
    def output_id(self) -> str:
        """What later stages' keys hash for this input: the digest of what it produced, so a
        forced rerun with other results reruns them and one with the same results does not
        (the key for records written before digests were kept)."""
        return self.digest or self.key

    def path(self, artifact: str) -> Path:
        """Absolute path of one of this stage's artifacts."""
        try:
            rel = self.artifacts[artifact]
        except KeyError:
            raise ConfigError(f"stage {self.name!r} has no {artifact!r} output; it has: "
                              f"{', '.join(self.artifacts) or 'none'}") from None
        path = self.dir / rel
        # stage.json files written before artifacts were stage-relative may hold a path
        # relative to the working directory of that run (serve_check's onnx)
        if not path.exists() and Path(rel).exists():
            return Path(rel)
        return path

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "key": self.key, "produces": self.produces,
                "inputs": self.inputs, "status": self.status, "seconds": round(self.seconds, 3),
                "metrics": self.metrics, "timings": self.timings, "artifacts": self.artifacts,
                "commands": self.commands, "digest": self.digest}

    @classmethod
    def read(cls, stage_dir: Path) -> "StageRecord | None":
        """The record in ``stage_dir/stage.json``, None when absent or unreadable."""
        try:
            d = json.loads((stage_dir / "stage.json").read_text())
            return cls(name=d["name"], type=d["type"], key=d["key"], dir=stage_dir, produces=d["produces"],
                       metrics=d.get("metrics", {}), timings=d.get("timings", {}),
                       artifacts=d.get("artifacts", {}), commands=d.get("commands", []),
                       inputs=d.get("inputs", []), seconds=float(d.get("seconds", 0.0)),
                       status=d.get("status", "ran"), digest=str(d.get("digest", "")))
        except (OSError, ValueError, KeyError, TypeError):
            return None


@dataclass
class StageContext:
    """Everything a stage may read: the pipeline, its own spec and directory, the records of
    the stages it reads from, ``resume`` (its directory holds an interrupted attempt
    with the same cache key) and ``run_command`` (the ``dlopt run`` line that redoes the run)."""

    pipeline: "PipelineConfig"
    spec: "StageSpec"
    dir: Path
    records: dict[str, StageRecord]
    resume: bool = False
    run_command: str = ""

    @property
    def input(self) -> StageRecord | None:
        return self.records.get(self.spec.input) if self.spec.input else None

    def inputs(self) -> list[StageRecord]:
        """The records named by ``inputs`` (or the main input when ``inputs`` is empty)."""
        names = self.spec.inputs or ([self.spec.input] if self.spec.input else [])
        return [self.records[n] for n in names]

    def artifact(self, path: str | Path) -> str:
        """``path`` as an ``artifacts`` entry: relative to this stage's directory, ``../``
        for a file of another stage. Not relative to the working directory, which a later
        ``dlopt run`` need not share, and not absolute, so a run directory can be moved."""
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(self.dir))).as_posix()

    def base(self, *overrides: dict[str, Any]) -> dict[str, Any]:
        """The pipeline's ``base`` run config with ``overrides`` merged in, named after the stage."""
        out = deep_merge(self.pipeline.base, *overrides)
        out["name"] = f"{self.pipeline.name}-{self.spec.name}"
        return out


def deep_merge(base: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``base`` with each override merged in (nested dicts merged, rest replaced)."""
    out = json.loads(json.dumps(base))
    for over in overrides:
        for k, v in (over or {}).items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = deep_merge(out[k], v)
            else:
                out[k] = json.loads(json.dumps(v))
    return out


class BaseConfigError(ConfigError):
    """A mistake in the pipeline's ``base``: said as ``base.KEY``, not against the stage whose
    check found it (every training stage would)."""


def parse_merged(pipeline: "PipelineConfig", *parts: tuple[str, dict[str, Any]], schema: Any = None,
                 where: str = "") -> Any:
    """``base`` with each ``(prefix, mapping)`` part merged in, parsed as ``schema`` (default
    RunConfig). An error names the key where the pipeline file sets it: ``prefix + KEY`` for
    the last part that sets it (``config.train.epochs``), else :class:`BaseConfigError` with
    ``base.KEY`` for a key of ``base``. A validator's own words (a model option) are led by
    the part that brought the mistake in (``config: unknown option ...``, ``base: ...``);
    ``where`` leads any other error."""
    from pydantic import ValidationError

    from dlopt.config import RunConfig, file_loc, format_validation_error, register_schema

    schema = register_schema(schema or RunConfig)
    data = deep_merge(pipeline.base, *(mapping for _, mapping in parts), {"name": "check"})
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        loc = file_loc(err.errors(include_url=False)[0]["loc"])
        owner = next((prefix for prefix, mapping in reversed(parts) if _sets(mapping, loc)), None)
        if owner is not None:
            raise ConfigError(format_validation_error(err, prefix=owner)) from None
        if _sets(pipeline.base, loc):
            raise BaseConfigError(format_validation_error(err, prefix="base.")) from None
        raise ConfigError(f"{where}{format_validation_error(err)}") from None
    except ConfigError as err:  # raised by a validator itself (a model option): its words name no key
        owner = _owner(pipeline.base, parts, str(err))
        if owner == "base.":
            raise BaseConfigError(f"base: {err}") from None
        raise ConfigError(f"{owner.rstrip('.')}: {err}" if owner else f"{where}{err}") from None


def _owner(base: dict[str, Any], parts: tuple[tuple[str, dict[str, Any]], ...], message: str) -> str | None:
    """The prefix of what brought in a mistake said in ``message`` (``base.`` for ``base``): the
    first part whose merge over ``base`` and the parts before it fails with it, as a run config;
    else the last part, without which the whole merge did not fail."""
    for i in range(len(parts) + 1):
        if _fails_with(deep_merge(base, *(mapping for _, mapping in parts[:i])), message):
            return "base." if i == 0 else parts[i - 1][0]
    return parts[-1][0] if parts else None


def _fails_with(data: dict[str, Any], message: str) -> bool:
    """Whether ``data`` (its ``search`` left out: a tune stage's) fails as a run config with ``message``."""
    from pydantic import ValidationError

    from dlopt.config import RunConfig

    try:
        RunConfig.model_validate({**{k: v for k, v in data.items() if k != "search"}, "name": "check"})
    except ConfigError as err:
        return str(err) == message
    except ValidationError:  # another mistake, said where it is found
        return False
    return False


def _sets(mapping: Any, loc: tuple) -> bool:
    """Whether ``mapping`` holds the key path ``loc`` (list items by index)."""
    node = mapping
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return False
    return bool(loc)
