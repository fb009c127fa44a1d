"""Config and CLI fuzz, in-process: hypothesis builds configs and ``--set`` overrides from the
schema itself (valid values, values just outside their bounds, wrong types, unknown keys).
Every invalid one must make ``dlopt train`` exit 2 with one line and no traceback; every
valid one must round-trip YAML -> config -> YAML unchanged."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import annotated_types as at
import hypothesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from rel_common import fresh_dir, result

Path_ = tuple[str, ...]


def _names() -> dict[Path_, list[str]]:
    """Registry-checked string fields and their valid values."""
    from dlopt.data import list_datasets
    from dlopt.models import list_models
    from dlopt.train.losses import LOSSES
    from dlopt.train.optim import OPTIMIZERS
    from dlopt.train.schedules import SCHEDULES

    return {("data", "name"): [getattr(r, "name", r) for r in list_datasets()],
            ("model", "name"): list_models(), ("train", "optim", "name"): OPTIMIZERS.names(),
            ("train", "schedule", "name"): SCHEDULES.names(), ("train", "loss", "name"): ["auto", *LOSSES.names()]}


def _leaves(model: type[BaseModel], prefix: Path_ = ()) -> list[tuple[Path_, Any, list[Any]]]:
    """(path, annotation, constraints) of every scalar field under ``model``."""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _leaves(ann, (*prefix, name))
        else:
            out.append(((*prefix, name), ann, list(field.metadata)))
    return out


def _bounds(meta: list[Any]) -> dict[str, Any]:
    b: dict[str, Any] = {}
    for m in meta:
        for key in ("ge", "gt", "le", "lt"):
            if isinstance(m, getattr(at, key.capitalize())):
                b[key] = getattr(m, key)
    return b


def _valid(path: Path_, ann: Any, meta: list[Any], names: dict[Path_, list[str]]) -> st.SearchStrategy | None:
    """Values the schema accepts for one field (None: leave the field at its default)."""
    if path in names:
        return st.sampled_from(names[path])
    args = typing.get_args(ann)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), ann) if optional else ann
    b = _bounds(meta)
    if typing.get_origin(base) is typing.Literal:
        s = st.sampled_from(typing.get_args(base))
    elif base is bool:
        s = st.booleans()
    elif base is int:
        lo = b.get("ge", b["gt"] + 1 if "gt" in b else -5)
        s = st.integers(lo, lo + 10_000)
    elif base is float:
        lo, hi = b.get("ge", b.get("gt", -1e3)), b.get("le", b.get("lt", 1e6))
        s = st.floats(lo, hi, exclude_min="gt" in b, exclude_max="lt" in b, allow_nan=False)
    elif typing.get_origin(base) is tuple and all(a is float for a in typing.get_args(base)):
        s = st.tuples(*[st.floats(0.0, 10.0)] * len(typing.get_args(base)))
    else:
        return None  # str, lists and dicts of sub-sections: defaults
    return s | st.none() if optional else s


def _invalid(ann: Any, meta: list[Any]) -> st.SearchStrategy:
    """Values that should be refused: wrong types, or just outside the bounds."""
    b = _bounds(meta)
    outside = ([st.just(b["ge"] - 1)] if "ge" in b else []) + ([st.just(b["gt"])] if "gt" in b else [])
    outside += ([st.just(b["le"] + 1)] if "le" in b else []) + ([st.just(b["lt"])] if "lt" in b else [])
    wrong = [st.text(max_size=6).filter(lambda s: s.strip() not in ("", "null", "~")), st.just([1, 2]),
             st.just({"x": 1}), st.just(float("nan")), st.just(float("inf")), st.just(2**80)]
    return st.one_of(*outside, *wrong)


@st.composite
def _config(draw: Any, leaves: list[tuple[Path_, Any, list[Any]]], names: dict[Path_, list[str]]
            ) -> tuple[dict[str, Any], list[str]]:
    """A raw config mapping and ``--set`` overrides: mostly valid edits, some invalid ones."""
    raw: dict[str, Any] = {}
    overrides: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        path, ann, meta = draw(st.sampled_from(leaves))
        valid = _valid(path, ann, meta, names)
        bad = draw(st.integers(0, 9)) == 0 or valid is None
        value = draw(_invalid(ann, meta) if bad else valid)
        if draw(st.integers(0, 3)) == 0:  # as an override string instead of a YAML key
            text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()
            overrides.append(f"{'.'.join(path)}={text}")
            continue
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    if draw(st.integers(0, 12)) == 0:
        raw.setdefault(draw(st.sampled_from(["train", "data", "model"])), {})[draw(st.text("abcxyz_", min_size=1, max_size=6))] = 1
    if draw(st.integers(0, 12)) == 0:
        overrides.append(draw(st.sampled_from(["train..epochs=1", "=3", "train", "train.epochs", ".x=1",
                                               "train.optim=3", "data.name.x=1", "train.epochs=[1, 2"])))
    return raw, overrides


def _check(raw: dict[str, Any], overrides: list[str], folder: Path, counts: dict[str, int],
           failures: list[str]) -> None:
    from typer.testing import CliRunner

    from dlopt.cli import app
    from dlopt.config import config_to_dict, dump_config, load_config
    from dlopt.errors import DloptError

    cfg_file = folder / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    try:
        cfg = load_config(cfg_file, overrides)
    except DloptError:
        counts["invalid"] += 1
        args = ["train", str(cfg_file), "--run-dir", str(folder / "never"), *[f"--set={o}" for o in overrides]]
        res = CliRunner().invoke(app, args)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        if res.exit_code != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in res.output:
            failures.append(f"{raw} {overrides}: exit {res.exit_code}, output {res.output[-200:]!r}")
        return
    except Exception as exc:  # noqa: BLE001 - any other exception is a crash the user would see
        failures.append(f"{raw} {overrides}: {type(exc).__name__}: {str(exc)[:160]}")
        return
    counts["valid"] += 1
    text = dump_config(cfg)
    cfg_file.write_text(text)
    again = load_config(cfg_file)
    # compared as written: a written config records its data directory ($DLOPT_DATA_DIR) absolute
    if config_to_dict(again) != config_to_dict(cfg) or dump_config(again) != text:
        failures.append(f"{raw} {overrides}: YAML round trip changed the config")


def config_fuzz(examples: int = 300, *, seed: int = 0) -> dict[str, Any]:
    """``examples`` hypothesis-built configs (reproducible from ``seed``) through the checks."""
    from dlopt.config import RunConfig

    names = _names()
    leaves = [leaf for leaf in _leaves(RunConfig) if leaf[0][-1] not in ("data_dir",)]
    folder = fresh_dir("config")
    counts = {"valid": 0, "invalid": 0}
    failures: list[str] = []

    @hypothesis.seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(_config(leaves, names))
    def one(case: tuple[dict[str, Any], list[str]]) -> None:
        _check(*case, folder, counts, failures)

    one()
    total = counts["valid"] + counts["invalid"]
    if total < examples:
        failures.append(f"only {total} of {examples} examples ran")
    return result(failures, examples=total, valid=counts["valid"], invalid=counts["invalid"],
                  crashes=sum(": exit" not in f and "round trip" not in f for f in failures),
                  bad_exits=sum(": exit" in f for f in failures),
                  round_trip_changes=sum("round trip" in f for f in failures), fields=len(leaves))
