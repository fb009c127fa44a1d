"""What dlopt embeds in an exported ONNX file (``metadata_props``) and reads back.

Every value is a string under a ``dlopt.`` key so any ONNX viewer shows it. Structured values
are JSON; the preprocessor's arrays travel as base64 ``.npy`` (read back with
``allow_pickle=False``), so a model file alone is enough to predict from raw inputs.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from dlopt.errors import ModelError

__all__ = ["ModelMetadata", "PREFIX", "SCHEMA_VERSION"]

PREFIX = "dlopt."
SCHEMA_VERSION = 1

# fields stored as plain strings; every other field is JSON
_PLAIN = ("task", "source_run", "dlopt_version", "exporter")


@dataclass(frozen=True)
class ModelMetadata:
    """Facts about an exported model that serving and prediction need.

    ``input_shape`` is one model input sample; ``raw_shape`` one raw sample before the saved
    preprocessing (equal to ``input_shape`` when ``preprocess`` is None). ``preprocess`` is a
    ``Preprocessor.state_dict()`` (arrays included). ``model`` is ``{"name", "options"}`` of a
    zoo model or ``{"name": "custom", "class": "package.module.Class"}`` of a user's module;
    ``dataset`` the run's data config, empty when it trained on in-memory data.
    """

    task: str = "classification"
    input_shape: tuple[int, ...] = ()
    raw_shape: tuple[int, ...] = ()
    class_names: list[str] = field(default_factory=list)
    preprocess: dict[str, Any] | None = None
    source_run: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    params: int | None = None
    macs: int | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    exporter: str = ""
    dlopt_version: str = ""

    @classmethod
    def from_user(cls, values: Mapping[str, Any], *, input_shape: tuple[int, ...]) -> "ModelMetadata":
        """Build from a user's ``metadata=`` dict; unknown keys are errors."""
        allowed = {f.name for f in fields(cls)} - {"parity", "exporter", "dlopt_version"}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ModelError(
                f"export metadata key {unknown[0]!r} is unknown; allowed: {', '.join(sorted(allowed))}"
            )
        data = dict(values)
        pre = data.get("preprocess")
        if pre is not None and hasattr(pre, "state_dict"):  # a fitted Preprocessor
            data["preprocess"] = pre.state_dict()
        if data.get("task", "classification") not in ("classification", "regression"):
            raise ModelError(
                f"export metadata task={data['task']!r} is invalid; allowed: classification, regression"
            )
        data["input_shape"] = tuple(int(d) for d in data.get("input_shape", input_shape))
        raw = data.get("raw_shape") or (data.get("preprocess") or {}).get("raw_shape")
        data["raw_shape"] = tuple(int(d) for d in raw) if raw else data["input_shape"]
        data["class_names"] = [str(c) for c in data.get("class_names", [])]
        from dlopt import __version__

        return cls(**data, dlopt_version=__version__)

    def replace(self, **changes: Any) -> "ModelMetadata":
        """A copy with ``changes`` applied."""
        return ModelMetadata(**{**asdict(self), **changes})

    # ------------------------------------------------------------------ ONNX properties
    def to_props(self) -> dict[str, str]:
        """``{"dlopt.<field>": text}`` for ``ModelProto.metadata_props``."""
        props = {f"{PREFIX}schema_version": str(SCHEMA_VERSION)}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _PLAIN:
                props[PREFIX + f.name] = str(value)
            elif f.name == "preprocess":
                props[PREFIX + f.name] = json.dumps(_encode_state(value))
            else:
                props[PREFIX + f.name] = json.dumps(value)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], *, where: str = "model") -> "ModelMetadata":
        """Parse what :meth:`to_props` wrote; files without dlopt keys give empty defaults."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            text = props.get(PREFIX + f.name)
            if text is None:
                continue
            try:
                values[f.name] = text if f.name in _PLAIN else json.loads(text)
            except ValueError:
                raise ModelError(f"{where}: metadata {PREFIX}{f.name} is not valid JSON") from None
        if "preprocess" in values:
            values["preprocess"] = _decode_state(values["preprocess"], where)
        for key in ("input_shape", "raw_shape"):
            if key in values:
                values[key] = tuple(int(d) for d in values[key])
        if values.get("input_shape") and not values.get("raw_shape"):
            values["raw_shape"] = values["input_shape"]
        return cls(**values)

    def preprocessor(self) -> Any:
        """The saved ``Preprocessor`` (None when the model takes its inputs as they are)."""
        if not self.preprocess:
            return None
        from dlopt.data import Preprocessor

        return Preprocessor.from_state(self.preprocess)

    def public(self) -> dict[str, Any]:
        """JSON-able summary for ``GET /v1/metadata`` (preprocessing arrays left out)."""
        out = asdict(self)
        pre = out.pop("preprocess") or {}
        out["preprocess"] = [op.get("op") for op in pre.get("ops", [])]
        out["input_shape"] = list(self.input_shape)
        out["raw_shape"] = list(self.raw_shape)
        return out


def _encode_state(state: dict[str, Any] | None) -> dict[str, Any] | None:
    if state is None:
        return None
    arrays = {k: _npy_b64(v) for k, v in state.get("arrays", {}).items()}
    return {**{k: v for k, v in state.items() if k != "arrays"}, "arrays": arrays}


def _decode_state(state: dict[str, Any] | None, where: str) -> dict[str, Any] | None:
    if state is None:
        return None
    try:
        arrays = {k: _npy_from_b64(v) for k, v in state.get("arrays", {}).items()}
    except ValueError as exc:
        raise ModelError(f"{where}: metadata {PREFIX}preprocess holds a bad array ({exc})") from None
    return {**state, "arrays": arrays}


def _npy_b64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _npy_from_b64(text: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(text, validate=True)), allow_pickle=False)
