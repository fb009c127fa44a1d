"""The shape of the files a report reads, checked once when each is loaded, so a
hand-edited or damaged file never ends in a traceback from deep inside a table or plot:

* ``results.json`` (the report's source): one line naming the file and the bad key, exit 2;
* a stage's side files (``lr_find.json``, a run's ``summary.json`` and ``metrics.jsonl``):
  a warning naming the file and key, and the report leaves out what it would have drawn.

Only what the report relies on is typed; other keys (and keys a later dlopt adds) pass.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from dlopt.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["check_results", "load_json", "read_json"]


class _Loose(BaseModel):
    # strict: "0.5" or true where a number belongs would fail later, in a format string
    model_config = ConfigDict(extra="allow", strict=True)


class _Environment(_Loose):
    cpu: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, Any] = Field(default_factory=dict)


class _Figures(_Loose):
    # the cells of the stage table and the cost plots: a string there used to draw as "–"
    accuracy: float | None = None
    params: float | None = None
    macs: float | None = None
    size_bytes: float | None = None


class _StageMetrics(_Figures):
    epochs: float | None = None


class _Latency(_Loose):
    p50_ms: float | None = None
    p95_ms: float | None = None
    throughput: float | None = None
    speedup: float | None = None
    verdict: str | None = None


class _Stage(_Loose):
    name: str
    type: str
    inputs: list[str] = Field(default_factory=list)
    metrics: _StageMetrics = Field(default_factory=_StageMetrics)
    timings: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(default_factory=dict)


class _Results(_Loose):
    stages: list[_Stage]
    environment: _Environment = Field(default_factory=_Environment)
    commands: list[str] = Field(default_factory=list)
    stage_commands: dict[str, list[str]] = Field(default_factory=dict)


class _LRFindMetrics(_Loose):
    suggested_lr: float = math.nan


class _TuneMetrics(_Loose):
    best_values: dict[str, Any] | None = None
    best_params: dict[str, Any] | None = None


class _ExportMetrics(_Loose):
    parity_max_abs_diff: float = math.nan


class _Variant(_Loose):
    values: list[Any] = Field(default_factory=list)


class _SweepMetrics(_Loose):
    metric: str = "accuracy"
    variants: dict[str, _Variant] | None = None


class _BenchMetrics(_Loose):
    models: dict[str, _Figures] = Field(default_factory=dict)


class _BenchTimings(_Loose):
    # model -> batch size -> figures
    models: dict[str, dict[str, _Latency | None]] = Field(default_factory=dict)


# stage type -> key of its record -> the shape the report reads there
_BY_TYPE: dict[str, dict[str, Any]] = {
    "lr_find": {"metrics": _LRFindMetrics},
    "tune": {"metrics": _TuneMetrics},
    "export": {"metrics": _ExportMetrics},
    "sweep": {"metrics": _SweepMetrics, "timings": dict[str, dict[str, Any]]},
    "bench": {"metrics": _BenchMetrics, "timings": _BenchTimings},
}


# ------------------------------------------------------------------------------ side files
class _LRCurve(_Loose):
    lrs: list[float] = Field(default_factory=list)
    losses: list[float] = Field(default_factory=list)
    smoothed: list[float] = Field(default_factory=list)
    suggestion: float | None = None

    @model_validator(mode="after")
    def _one_point_per_rate(self) -> "_LRCurve":
        if len(self.losses) != len(self.lrs) or self.smoothed and len(self.smoothed) != len(self.lrs):
            raise ValueError(f"{len(self.lrs)} lrs, {len(self.losses)} losses and "
                             f"{len(self.smoothed)} smoothed; need one of each per step")
        return self


class _DataInfo(_Loose):
    class_names: list[Any] | None = None


class _Summary(_Loose):
    test: dict[str, Any] = Field(default_factory=dict)
    data_info: _DataInfo | None = None
    confusion_matrix: list[list[int]] | None = None

    @model_validator(mode="after")
    def _square(self) -> "_Summary":
        m = self.confusion_matrix or []
        if any(len(row) != len(m) for row in m):
            raise ValueError(f"confusion_matrix: need {len(m)} rows of {len(m)} counts")
        return self


class _Row(_Loose):
    epoch: float | None = None


class _BenchEnvironment(_Loose):
    load_average: list[float] | None = None


class _BenchFile(_Loose):
    environment: _BenchEnvironment = Field(default_factory=_BenchEnvironment)


# file name -> its shape (a .jsonl file: one JSON value a line, read as a list)
_FILES: dict[str, Any] = {"lr_find.json": _LRCurve, "summary.json": _Summary,
                          "metrics.jsonl": list[_Row], "bench.json": _BenchFile}


def load_json(path: Path) -> tuple[Any, str | None]:
    """``(content, None)`` when ``path`` (``lr_find.json``, ``summary.json``,
    ``metrics.jsonl``, ``bench.json``) holds what the report reads there, else ``(None, what is wrong)``:
    ``"missing"``, or a line naming the file and key."""
    try:
        text = path.read_text()
        doc = [json.loads(ln) for ln in text.splitlines() if ln.strip()] \
            if path.suffix == ".jsonl" else json.loads(text)
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as exc:
        return None, f"{path} is unreadable ({type(exc).__name__})"
    try:
        _adapter(_FILES[path.name]).validate_python(doc, strict=True)
    except ValidationError as err:
        return None, f"{path}: {_problem(err, (), None)}"
    return doc, None


def read_json(path: Path) -> Any:
    """:func:`load_json`'s content, or None: quietly for a missing file, with a warning naming
    the file and key otherwise (the report leaves out what it would have drawn from it)."""
    doc, problem = load_json(path)
    if problem not in (None, "missing"):
        log.warning("%s; the report leaves it out", problem)
    return doc


# ---------------------------------------------------------------------------- results.json
def check_results(doc: Any, path: Path) -> None:
    """ConfigError (one line: the file, the key path, what is wrong) unless ``doc`` has the
    shape of a ``results.json`` written by ``dlopt run``."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} is not a dlopt results file: need a mapping with a 'stages' "
                          f"list (as dlopt run writes it), got {_short(doc)}")
    _check(_Results, doc, path, (), doc)
    for i, stage in enumerate(doc["stages"]):
        for key, shape in _BY_TYPE.get(stage["type"], {}).items():
            _check(shape, stage.get(key, {}), path, ("stages", i, key), doc)


@functools.lru_cache(maxsize=None)
def _adapter(shape: Any) -> TypeAdapter[Any]:
    return TypeAdapter(shape)


def _check(shape: Any, value: Any, path: Path, prefix: tuple[Any, ...], doc: dict[str, Any]) -> None:
    try:
        _adapter(shape).validate_python(value, strict=True)
    except ValidationError as err:
        raise ConfigError(f"{path} is not a dlopt results file: {_problem(err, prefix, doc)}") from None


def _problem(err: ValidationError, prefix: tuple[Any, ...], doc: dict[str, Any] | None) -> str:
    """``key.path=value: what it needs`` for the first error."""
    e = err.errors(include_url=False)[0]
    where = _where((*prefix, *e["loc"]), doc)
    if e["type"] == "missing":
        return f"{where}: missing"
    if e["type"] == "value_error":  # a rule of the whole mapping (lengths, a square matrix)
        msg = e["msg"].removeprefix("Value error, ")
        return f"{where}: {msg}" if where else msg
    bad = f"{where}={_short(e['input'])}" if where else _short(e["input"])
    return f"{bad}: {_NEED.get(e['type'], e['msg'])}"


# pydantic's words name the private model classes ("or instance of _Stage")
_NEED = {"dict_type": "need a mapping", "model_type": "need a mapping", "list_type": "need a list",
         "string_type": "need a string", "float_type": "need a number", "int_type": "need a whole number"}


def _where(loc: tuple[Any, ...], doc: dict[str, Any] | None) -> str:
    """``stages[5] 'bench' metrics.models``: list positions in brackets, a stage by its name too."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if doc is not None and loc[:i] == ("stages",):
                name = doc["stages"][part].get("name") if isinstance(doc["stages"][part], dict) else None
                out += f" {name!r}" if isinstance(name, str) else ""
        else:
            out += f"{'' if not out else ' ' if isinstance(loc[i - 1], int) else '.'}{part}"
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
