"""Preprocessing fitted on the training split only, then applied to every split and to raw
inputs at prediction time.

Ops are scikit-learn transformers behind a small registry. State is JSON plus numpy arrays
(``preprocess.json`` + ``preprocess.npz``, never pickle): each op stores its transformer's
fitted attributes (``mean_``, ``scale_``, ``components_``, ...) and rebuilds it on load.

Order: ``label_encode`` then ``impute`` run first, whatever their order in the config (they
make the data numeric, then complete: text cannot be imputed), then the image scaling (raw
uint8 / 255), then the other ops in the order given.
Image/sequence inputs keep their shape under ``zscore``/``minmax`` (statistics per channel);
``pca``/``lda`` flatten them to ``(N, n_components)``.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from dlopt.data._values import channels_first
from dlopt.errors import ConfigError, DataError
from dlopt.registry import Registry

__all__ = ["Preprocessor", "PREPROCESS_OPS", "STATE_JSON", "STATE_NPZ"]

log = logging.getLogger(__name__)

PREPROCESS_OPS: Registry = Registry("preprocessing op", error=ConfigError)
STATE_JSON = "preprocess.json"
STATE_NPZ = "preprocess.npz"
_FORMAT_VERSION = 1
_FIRST = ("label_encode", "impute")  # ops that must run before anything numeric, in this order


# ------------------------------------------------------------------- sklearn (de)serialize
def _sk_state(est: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """An estimator's attributes as JSON values and numeric arrays (no pickle)."""
    meta: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for key, v in vars(est).items():
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                v = v.astype(str)
            arrays[key] = v
        elif isinstance(v, np.dtype):
            meta[key] = {"__dtype__": v.str}
        elif isinstance(v, np.generic):
            meta[key] = v.item()
        elif isinstance(v, tuple):
            meta[key] = {"__tuple__": list(v)}
        elif v is None or isinstance(v, (bool, int, float, str)):
            meta[key] = v
        else:
            raise TypeError(f"cannot serialize {type(est).__name__}.{key} of type {type(v).__name__}")
    return meta, arrays


def _sk_restore(cls: type, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Any:
    est = cls.__new__(cls)
    for key, v in meta.items():
        if isinstance(v, dict) and "__dtype__" in v:
            v = np.dtype(v["__dtype__"])
        elif isinstance(v, dict) and "__tuple__" in v:
            v = tuple(v["__tuple__"])
        setattr(est, key, v)
    for key, v in arrays.items():
        setattr(est, key, v)
    return est


# -------------------------------------------------------------------------------- ops
class _Op(ABC):
    """One fitted step. Subclasses set ``name`` and implement ``_fit``/``transform`` (and
    ``_make`` when they wrap a scikit-learn estimator, whose state is then saved for them)."""

    name = ""

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.est: Any = None

    def fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        try:
            self._fit(x, y)
        except ValueError as exc:
            raise ConfigError(f"preprocess op {self.name}: {str(exc).splitlines()[0]}") from None

    @abstractmethod
    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        """Learn from the training inputs (and labels, for supervised ops)."""

    @abstractmethod
    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the fitted op."""

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = _sk_state(self.est) if self.est is not None else ({}, {})
        return {"op": self.name, "params": self.params, "est": meta}, arrays

    @classmethod
    def from_state(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "_Op":
        op = cls(**meta["params"])
        if meta.get("est"):
            op.est = _sk_restore(op._estimator_class(), meta["est"], arrays)
        return op

    def _estimator_class(self) -> type:
        return type(self._make())

    def _make(self) -> Any:
        return None


def _channels_last_2d(x: np.ndarray) -> np.ndarray:
    """(N, C, *S) -> (N * prod(S), C): one row per position, one column per channel."""
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _from_channels_last_2d(flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    moved = (shape[0], *shape[2:], shape[1])
    return np.moveaxis(flat.reshape(moved), -1, 1)


class _Scale(_Op):
    """Raw image values -> [0, 1] (divide by 255 for uint8, 16 for sklearn digits)."""

    name = "scale"

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        pass

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = x.astype(np.float32)  # always a copy, so dividing in place leaves x alone
        out /= np.float32(self.params["factor"])  # in place: one full-size array, not two
        return out


class _ChannelScaler(_Op):
    """A scikit-learn scaler per feature (tables) or per channel (images, sequences)."""

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        self.est = self._make().fit(_channels_last_2d(x) if x.ndim > 2 else x)

    def transform(self, x: np.ndarray) -> np.ndarray:
        if x.ndim > 2:
            return _from_channels_last_2d(self.est.transform(_channels_last_2d(x)), x.shape)
        return self.est.transform(x)


@PREPROCESS_OPS.register("zscore", kind="scaler")
class _ZScore(_ChannelScaler):
    """Zero mean, unit variance (StandardScaler)."""

    name = "zscore"

    def _make(self) -> Any:
        from sklearn.preprocessing import StandardScaler

        return StandardScaler()


@PREPROCESS_OPS.register("minmax", kind="scaler")
class _MinMax(_ChannelScaler):
    """Rescale to [0, 1] by the training min/max (MinMaxScaler)."""

    name = "minmax"

    def _make(self) -> Any:
        from sklearn.preprocessing import MinMaxScaler

        return MinMaxScaler()


class _Projection(_Op):
    """Flatten each sample and project to ``n_components`` features."""

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        self.est = self._make()
        self.est.fit(x.reshape(len(x), -1), y)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return self.est.transform(x.reshape(len(x), -1))


@PREPROCESS_OPS.register("pca", kind="projection")
class _PCA(_Projection):
    """Principal components (PCA), ``n_components`` (default: all)."""

    name = "pca"

    def _make(self) -> Any:
        from sklearn.decomposition import PCA

        return PCA(n_components=self.params.get("n_components"), random_state=0)


@PREPROCESS_OPS.register("lda", kind="projection", needs_labels=True)
class _LDA(_Projection):
    """Linear discriminant projection, at most classes - 1 components."""

    name = "lda"

    def _make(self) -> Any:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        return LinearDiscriminantAnalysis(n_components=self.params.get("n_components"))

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        if y is None or not np.issubdtype(y.dtype, np.integer):
            raise ConfigError("preprocess op lda needs class labels; use pca for regression data")
        super()._fit(x, y)


@PREPROCESS_OPS.register("impute", kind="table")
class _Impute(_Op):
    """Fill missing values (NaN) with the training mean/median/most frequent value."""

    name = "impute"

    def _make(self) -> Any:
        from sklearn.impute import SimpleImputer

        # keep_empty_features: an all-missing column stays (as 0) so shapes never change
        return SimpleImputer(strategy=self.params.get("strategy", "mean"), keep_empty_features=True)

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        self.est = self._make().fit(x.reshape(len(x), -1).astype(np.float64))

    def transform(self, x: np.ndarray) -> np.ndarray:
        flat = self.est.transform(x.reshape(len(x), -1).astype(np.float64))
        return flat.reshape(x.shape)


@PREPROCESS_OPS.register("label_encode", kind="table")
class _LabelEncode(_Op):
    """Text columns -> integer codes, one LabelEncoder per column (unseen values -> -1)."""

    name = "label_encode"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.columns: list[int] = []
        self.classes: list[np.ndarray] = []

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        self.columns = text_columns(x)
        self.classes = [np.unique(x[:, c].astype(str)) for c in self.columns]

    def transform(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2:
            raise DataError(f"preprocess op label_encode needs a table (N, F), got shape {x.shape}")
        out = np.empty(x.shape, dtype=np.float64)
        enc = set(self.columns)
        for c in range(x.shape[1]):
            if c not in enc:
                out[:, c] = x[:, c].astype(np.float64)
        for c, classes in zip(self.columns, self.classes):
            values = x[:, c].astype(str)
            pos = np.searchsorted(classes, values)
            known = (pos < len(classes)) & (classes[np.minimum(pos, len(classes) - 1)] == values)
            if not known.all():
                log.warning("column %d: %d unseen value(s) encoded as -1", c, int((~known).sum()))
            out[:, c] = np.where(known, pos, -1)
        return out

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"op": self.name, "params": self.params, "columns": self.columns}
        return meta, {f"classes{i}": c for i, c in enumerate(self.classes)}

    @classmethod
    def from_state(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "_LabelEncode":
        op = cls(**meta["params"])
        op.columns = list(meta["columns"])
        op.classes = [arrays[f"classes{i}"] for i in range(len(op.columns))]
        return op


def text_columns(x: np.ndarray) -> list[int]:
    """Indices of table columns holding strings (object arrays only)."""
    if x.dtype != object or x.ndim != 2:
        return []
    return [c for c in range(x.shape[1]) if any(isinstance(v, str) for v in x[:, c])]


_ALL_OPS: dict[str, type[_Op]] = {"scale": _Scale}
_ALL_OPS.update({e.name: e.factory for e in PREPROCESS_OPS})


# ------------------------------------------------------------------------- preprocessor
class Preprocessor:
    """A fitted chain of ops mapping raw inputs to float32 model inputs."""

    def __init__(self, ops: Iterable[_Op] = (), *, raw_shape: tuple[int, ...] | None = None,
                 feature_names: Iterable[str] = ()) -> None:
        self.ops = list(ops)
        self.raw_shape = raw_shape  # per-sample shape of the raw inputs seen at fit
        # the raw table's column names (CSV header), [] when unknown: prediction matches a CSV header to them
        self.feature_names = [str(n) for n in feature_names]
        self.fitted = False

    @classmethod
    def build(cls, steps: Iterable[Any] = (), *, scale: float = 0.0,
              feature_names: Iterable[str] = ()) -> "Preprocessor":
        """Unfitted chain from ``PreprocessStep``s or dicts ({"op": "pca", "n_components": 8});
        ``scale`` > 0 divides raw values (images) before the user ops; ``feature_names`` names
        the raw table's columns."""
        parsed = [_step_dict(s) for s in steps]
        first = sorted((s for s in parsed if s["op"] in _FIRST), key=lambda s: _FIRST.index(s["op"]))
        rest = [s for s in parsed if s["op"] not in _FIRST]
        ops = [_make_op(s) for s in first]
        if scale:
            ops.append(_Scale(factor=float(scale)))
        ops += [_make_op(s) for s in rest]
        return cls(ops, feature_names=feature_names)

    @property
    def op_names(self) -> list[str]:
        return [op.name for op in self.ops]

    @property
    def categories(self) -> dict[int, list[str]]:
        """The training values of each label-encoded raw column, ``{column: values}``; empty
        when no column is text (every raw column then takes numbers)."""
        for op in self.ops:
            if isinstance(op, _LabelEncode):
                return {c: [str(v) for v in values] for c, values in zip(op.columns, op.classes)}
            if not isinstance(op, _Impute):  # later ops no longer see raw columns
                break
        return {}

    @property
    def imputes(self) -> bool:
        """True when an ``impute`` op fills missing raw values (NaN): one that sees the raw
        columns (only ``label_encode`` before it), so a NaN input is a missing value."""
        names = [n for n in self.op_names if n != "label_encode"]
        return bool(names) and names[0] == "impute"

    @property
    def pixel_divisor(self) -> float | None:
        """The divisor when the whole chain divides raw pixels (a lone scale op), else None."""
        if len(self.ops) == 1 and isinstance(self.ops[0], _Scale):
            return float(self.ops[0].params["factor"])
        return None

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> "Preprocessor":
        """Fit every op in turn on the training inputs (each sees the previous op's output)."""
        self.fit_transform(x, y)
        return self

    def fit_transform(self, x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        self.raw_shape = tuple(int(d) for d in x.shape[1:])
        out = x
        for op in self.ops:
            if op.name != "label_encode":
                out = _numeric(out)
            op.fit(out, y)
            out = op.transform(out)
        self.fitted = True
        return _numeric(out).astype(np.float32, copy=False)

    def transform(self, x_raw: np.ndarray) -> np.ndarray:
        """Raw inputs (as read from the dataset) -> float32 model inputs.

        ``x_raw`` is a batch ``(N, *raw_shape)``; a flat ``(N, prod)`` batch or one sample
        without the batch axis is reshaped to that layout (e.g. MNIST as (28, 28) or (N, 784)),
        channels-last images ``(N, H, W, C)`` are transposed to it.
        """
        out = self._as_batch(np.asarray(x_raw))
        for op in self.ops:
            if op.name != "label_encode":
                out = _numeric(out)
            out = op.transform(out)
        return _numeric(out).astype(np.float32, copy=False)

    def _as_batch(self, x: np.ndarray) -> np.ndarray:
        shape = self.raw_shape
        if shape is None or x.shape[1:] == shape:
            return x
        x = channels_first(x, shape)  # channels-last images, as a run on (N, H, W, C) arrays takes them
        if x.shape[1:] == shape:
            return x
        n = int(np.prod(shape))
        if x.ndim >= 2 and int(np.prod(x.shape[1:])) == n:
            return x.reshape(len(x), *shape)
        if x.size == n:
            return x.reshape(1, *shape)
        raise DataError(f"input sample shape {tuple(x.shape[1:])} does not match the raw sample shape {shape}")

    # ---- state: JSON + arrays, never pickle
    def state_dict(self) -> dict[str, Any]:
        """``{"version", "raw_shape", "feature_names", "ops": [JSON per op], "arrays": {name: ndarray}}``."""
        ops, arrays = [], {}
        for i, op in enumerate(self.ops):
            meta, arrs = op.state()
            ops.append(meta)
            arrays.update({f"{i}.{k}": v for k, v in arrs.items()})
        raw_shape = list(self.raw_shape) if self.raw_shape is not None else None
        return {"version": _FORMAT_VERSION, "raw_shape": raw_shape, "feature_names": self.feature_names,
                "ops": ops, "arrays": arrays}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Preprocessor":
        arrays = state.get("arrays", {})
        ops = []
        for i, meta in enumerate(state["ops"]):
            if meta["op"] not in _ALL_OPS:
                raise DataError(f"unknown preprocessing op {meta['op']!r} in saved state")
            prefix = f"{i}."
            mine = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
            ops.append(_ALL_OPS[meta["op"]].from_state(meta, mine))
        shape = state.get("raw_shape")
        pre = cls(ops, raw_shape=tuple(shape) if shape is not None else None,
                  feature_names=state.get("feature_names") or ())
        pre.fitted = True
        return pre

    def save(self, directory: str | Path) -> None:
        """Write ``preprocess.json`` and ``preprocess.npz`` into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        arrays = state.pop("arrays")
        (d / STATE_JSON).write_text(json.dumps(state, indent=1))
        np.savez(d / STATE_NPZ, **arrays)

    @classmethod
    def load(cls, directory: str | Path) -> "Preprocessor":
        """Read what :meth:`save` wrote (arrays loaded with ``allow_pickle=False``)."""
        d = Path(directory)
        try:
            state = json.loads((d / STATE_JSON).read_text())
            with np.load(d / STATE_NPZ, allow_pickle=False) as f:
                state["arrays"] = {k: f[k] for k in f.files}
        except FileNotFoundError as exc:
            raise DataError(f"missing file: {exc.filename}") from None
        except (ValueError, OSError) as exc:
            raise DataError(f"corrupt preprocessor state in {d}: {exc}") from None
        return cls.from_state(state)

    def __repr__(self) -> str:
        return f"Preprocessor({' -> '.join(self.op_names) or 'identity'})"


def _step_dict(step: Any) -> dict[str, Any]:
    d = step.model_dump() if hasattr(step, "model_dump") else dict(step)
    return {k: v for k, v in d.items() if v is not None}


def _make_op(step: Mapping[str, Any]) -> _Op:
    name = step["op"]
    cls = PREPROCESS_OPS.get(name).factory
    params: dict[str, Any] = {}
    if "n_components" in step and name in ("pca", "lda"):
        params["n_components"] = int(step["n_components"])
    if name == "impute":
        params["strategy"] = step.get("strategy", "mean")
    return cls(**params)


def _numeric(x: np.ndarray) -> np.ndarray:
    if x.dtype != object:
        return x
    cols = text_columns(x)
    if cols:
        raise DataError(f"non-numeric input columns {cols}; add preprocess op label_encode")
    return x.astype(np.float64)
