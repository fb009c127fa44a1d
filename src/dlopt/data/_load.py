"""``load_dataset``: read -> check -> split -> preprocess (fit on train) -> tensors."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from dlopt.data._builtin import idx_raw
from dlopt.data._idx import IDX_FILES, read_idx, read_idx_shape
from dlopt.data._raw import RawData
from dlopt.data._registry import (
    DATA_DIR_ENV, DATASETS, FORMATS, check_dataset_name, check_target, data_dir_sets, resolve_data_dir,
    split_format,
)
from dlopt.data._split import split_sizes, take
from dlopt.data._types import DataBundle, DatasetInfo, Split
from dlopt.data.preprocess import Preprocessor, text_columns
from dlopt.errors import ConfigError, DataError
from dlopt.registry import Entry

__all__ = ["load_dataset", "load_data", "list_datasets", "read_raw", "read_splits", "splits_of",
           "preprocess_splits", "RawSplits", "DatasetRow"]

log = logging.getLogger(__name__)

# Integer labels are class indices: the model gets max+1 outputs. Labels spread beyond both
# limits (max+1 > 1000 and > 10x the distinct values) are ids, not indices; a label of 1e9
# would otherwise allocate a 1e9-wide head.
_MAX_CLASSES = 1000
_MAX_CLASS_SPREAD = 10


def read_raw(name: str, *, data_dir: str | os.PathLike | None = None, target: str | None = None,
             bad_samples: str = "fail") -> RawData:
    """The raw arrays of dataset ``name`` (a registry name, ``<format>:<path>`` or a data-dir set)."""
    check_dataset_name(name, data_dir)
    fmt = split_format(name)
    if fmt:
        entry: Entry | None = FORMATS.get(fmt[0])
    else:  # None: an IDX set found in the data directory
        entry = DATASETS.get(name) if name in DATASETS else None
    check_target(name, target)
    if entry is None:
        return idx_raw(data_dir_sets(data_dir)[name])
    available: dict[str, Any] = {
        "data_dir": resolve_data_dir(data_dir), "target": target, "bad_samples": bad_samples,
        "path": fmt[1] if fmt else None,
    }
    params = entry.params()  # each reader takes only the keywords it declares
    return entry.factory(**{k: v for k, v in available.items() if k in params})


def load_dataset(
    name_or_cfg: Any,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    subset: int | None = None,
    test_subset: int | None = None,
    target: str | None = None,
    preprocess: Iterable[Any] = (),
    bad_samples: str = "fail",
) -> DataBundle:
    """Load, split and preprocess a dataset.

    Validation is carved from the training pool; the official test split is kept when the set
    has one, else a stratified ``test_fraction`` is held out. ``subset`` keeps the first N of a
    seeded (stratified) shuffle of the training pool before validation is carved from it;
    ``test_subset`` does the same for the test split. Preprocessing is fitted on train only.
    A ``DataConfig`` may be passed instead of a name.
    """
    if not isinstance(name_or_cfg, str):
        return load_data(name_or_cfg)
    return preprocess_splits(read_splits(
        name_or_cfg, data_dir=data_dir, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
        subset=subset, test_subset=test_subset, target=target, preprocess=preprocess, bad_samples=bad_samples))


@dataclass
class RawSplits:
    """A dataset read, checked and split, not yet preprocessed: ``(x, y)`` arrays per split,
    and the preprocessing steps to fit (what cross-validation fits again per fold)."""

    name: str
    raw: RawData
    num_classes: int
    steps: list[Any]
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray]


def read_splits(name: str, *, data_dir: str | os.PathLike | None = None, seed: int = 0,
                val_fraction: float = 0.1, test_fraction: float = 0.2, subset: int | None = None,
                test_subset: int | None = None, target: str | None = None,
                preprocess: Iterable[Any] = (), bad_samples: str = "fail") -> RawSplits:
    """:func:`load_dataset` up to the split: the raw arrays of each split (same arguments)."""
    if not 0 <= val_fraction < 1 or not 0 < test_fraction < 1:
        raise ConfigError(
            f"val_fraction={val_fraction}, test_fraction={test_fraction}: need 0 <= val < 1, 0 < test < 1"
        )
    if bad_samples not in ("fail", "skip"):
        raise ConfigError(f"bad_samples={bad_samples!r}: must be fail or skip")
    raw = read_raw(name, data_dir=data_dir, target=target, bad_samples=bad_samples)
    num_classes = _check_raw(raw)
    steps = list(preprocess)
    _check_table(raw, {_op(s) for s in steps})
    train, val, test = _split(raw, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                              subset=subset, test_subset=test_subset)
    return RawSplits(name, raw, num_classes, steps, train, val, test)


def preprocess_splits(rs: RawSplits, *, train: tuple[np.ndarray, np.ndarray] | None = None,
                      val: tuple[np.ndarray, np.ndarray] | None = None) -> DataBundle:
    """Fit the preprocessing on the training split (``train``/``val`` given: on that training
    fold, with that validation fold; the test split stays ``rs.test``) and make the tensors."""
    raw, num_classes = rs.raw, rs.num_classes
    if train is None:
        train, val = rs.train, rs.val
    pre = Preprocessor.build(rs.steps, scale=raw.scale, feature_names=raw.feature_names)
    train_s, val_split, test = _make_splits(pre, train, val, rs.test, raw)
    info = DatasetInfo(
        name=rs.name, task=raw.task, input_shape=train_s.input_shape,
        num_classes=num_classes if raw.task == "classification" else 0,
        class_names=list(raw.class_names) or [str(i) for i in range(num_classes)],
        source=raw.source, n_train=len(train_s), n_test=len(test),
    )
    log.info("loaded %s: train %d, val %d, test %d, input %s", rs.name, len(train_s),
             len(val_split) if val_split else 0, len(test), info.input_shape)
    return DataBundle(info=info, train=train_s, val=val_split, test=test, preprocessor=pre)


def splits_of(cfg: Any) -> RawSplits:
    """:func:`read_splits` with a ``DataConfig``'s settings."""
    return read_splits(
        cfg.name, data_dir=cfg.data_dir, seed=cfg.seed, val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction, subset=cfg.subset, test_subset=cfg.test_subset,
        target=cfg.target, preprocess=cfg.preprocess, bad_samples=cfg.bad_samples,
    )


def load_data(cfg: Any) -> DataBundle:
    """The one adapter from ``DataConfig`` to :func:`load_dataset`; also checks that the
    configured augmentation fits the data (image ops need (C, H, W) inputs)."""
    bundle = preprocess_splits(splits_of(cfg))
    if cfg.augment:
        from dlopt.data.augment import check_augment

        check_augment(cfg.augment, bundle.info.input_shape, input_range=bundle.train.value_range())
    return bundle


# ----------------------------------------------------------------------------- checks
def _op(step: Any) -> str:
    return step.op if hasattr(step, "op") else step["op"]


def _check_raw(raw: RawData) -> int:
    """Lengths, emptiness, matching splits and labels; returns the class count (0 for regression)."""
    pairs = [("", raw.x, raw.y)] + ([("test ", raw.x_test, raw.y_test)] if raw.has_test else [])
    for part, x, y in pairs:
        if len(x) != len(y):
            raise DataError(f"x/y length mismatch in {raw.source}: {part}x has {len(x)}, {part}y has {len(y)}")
        if len(x) == 0:
            raise DataError(f"empty dataset: {raw.source} has no {part}samples")
    if raw.has_test:
        _check_test_inputs(raw)
    ys = [y for _, _, y in pairs]
    if raw.task == "regression":
        if not all(np.isfinite(y.astype(np.float64)).all() for y in ys):
            raise DataError(f"non-finite regression targets in {raw.source}")
        return 0
    return _check_classes(raw, ys)


def _check_test_inputs(raw: RawData) -> None:
    """The model's shape and the pixel scaling are taken from x: x_test must match them, or
    the run fails (or silently mis-scales) only at test evaluation, after training."""
    kinds = [_number_kind(x) for x in (raw.x, raw.x_test)]
    if kinds[0] != kinds[1]:
        raise DataError(f"x/x_test dtype mismatch in {raw.source}: x is {kinds[0]} ({raw.x.dtype}), x_test is "
                        f"{kinds[1]} ({raw.x_test.dtype}); both splits need one kind, integer or float")
    if raw.x.shape[1:] != raw.x_test.shape[1:]:
        raise DataError(f"x/x_test shape mismatch in {raw.source}: x samples are {raw.x.shape[1:]}, x_test "
                        f"samples {raw.x_test.shape[1:]}; both splits need the same per-sample shape")


def _number_kind(x: np.ndarray) -> str:
    return "integer" if x.dtype.kind in "biu" else "float" if x.dtype.kind == "f" else str(x.dtype)


def _check_classes(raw: RawData, ys: list[np.ndarray]) -> int:
    """Integer labels in [0, C) naming at least two training classes; returns C."""
    for y in ys:
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
            if not np.all(np.mod(y, 1) == 0):
                raise DataError(f"class labels in {raw.source} must be integers, got dtype {y.dtype}")
    low = min(int(y.min()) for y in ys)
    high = max(int(y.max()) for y in ys)
    c = raw.num_classes if raw.num_classes is not None else high + 1
    if low < 0 or high >= c:
        bad = low if low < 0 else high
        raise DataError(f"labels outside [0, {c}) in {raw.source}: found {bad}")
    distinct = len(np.unique(np.concatenate(ys)))
    if raw.num_classes is None and c > max(_MAX_CLASSES, _MAX_CLASS_SPREAD * distinct):
        raise DataError(
            f"labels in {raw.source} reach {high} with only {distinct} distinct values: integer labels "
            f"must be class indices 0..K-1 (a model gets max+1 outputs); remap them, e.g. "
            f"np.unique(y, return_inverse=True)[1]"
        )
    counts = np.bincount(raw.y.astype(np.int64), minlength=c)
    if np.count_nonzero(counts) < 2:
        raise DataError(f"single-class data in {raw.source}: every training label is class "
                        f"{_class_name(raw, int(counts.argmax()))}; classification needs at least 2 classes")
    _warn_empty_classes(raw, counts)
    return c


def _warn_empty_classes(raw: RawData, counts: np.ndarray) -> None:
    # Labels 1..K leave class 0 empty; that is legal (a subset may miss a class) but usually a
    # labelling slip, and per-class metrics such as AUC turn nan.
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        shown = ", ".join(_class_name(raw, int(k)) for k in empty[:5]) + (", ..." if empty.size > 5 else "")
        log.warning("%s: %d of %d classes have no training sample (%s); labels are class indices "
                    "0..%d as given, remap them if those classes should not exist",
                    raw.source, empty.size, len(counts), shown, len(counts) - 1)


def _class_name(raw: RawData, k: int) -> str:
    return repr(raw.class_names[k]) if k < len(raw.class_names) else str(k)


def _check_table(raw: RawData, ops: set[str]) -> None:
    """Tables: text columns need label_encode, missing values need impute."""
    if raw.kind != "tabular":
        return
    x_all = raw.x if raw.x_test is None else np.concatenate([raw.x, raw.x_test])
    text = text_columns(x_all)
    if text and "label_encode" not in ops:
        raise DataError(
            f"{raw.source}: column {_col(raw, text[0])} is non-numeric; add preprocess op label_encode"
        )
    if "impute" in ops:
        return
    for c in range(x_all.shape[1]):
        if c in text:
            continue
        missing = int(np.isnan(x_all[:, c].astype(np.float64)).sum())
        if missing:
            raise DataError(f"{raw.source}: column {_col(raw, c)} has {missing} missing values; add preprocess op impute")


def _col(raw: RawData, c: int) -> str:
    return repr(raw.feature_names[c]) if c < len(raw.feature_names) else str(c)


# ------------------------------------------------------------------------------ split
def _split(raw: RawData, *, seed: int, val_fraction: float, test_fraction: float,
           subset: int | None, test_subset: int | None) -> tuple[tuple, tuple | None, tuple]:
    strat = raw.task == "classification"
    x, y = raw.x, raw.y
    if raw.has_test:
        xte, yte = raw.x_test, raw.y_test
    else:
        n_test = split_sizes(len(y), test_fraction)
        if n_test == 0:
            raise DataError(f"{raw.source}: {len(y)} samples are too few for a test split")
        test_idx, pool_idx = take(y, n_test, seed=seed, stratify=strat)
        xte, yte, x, y = x[test_idx], y[test_idx], x[pool_idx], y[pool_idx]
    if test_subset is not None and test_subset < len(yte):
        keep, _ = take(yte, test_subset, seed=seed, stratify=strat)
        xte, yte = xte[keep], yte[keep]
    if subset is not None and subset < len(y):
        keep, _ = take(y, subset, seed=seed, stratify=strat)
        x, y = x[keep], y[keep]
    val = None
    n_val = split_sizes(len(y), val_fraction)
    if n_val:
        val_idx, train_idx = take(y, n_val, seed=seed, stratify=strat)
        val = (x[val_idx], y[val_idx])
        x, y = x[train_idx], y[train_idx]
    if len(y) == 0:
        raise DataError(f"empty dataset: no training samples left in {raw.source}")
    return (x, y), val, (xte, yte)


def _make_splits(pre: Preprocessor, train: tuple, val: tuple | None, test: tuple,
                 raw: RawData) -> tuple[Split, Split | None, Split]:
    """Fit ``pre`` on train and apply it to every split. uint8 images whose only op divides
    them stay uint8 (:meth:`Split.scaled`): nothing is converted or allocated at load time."""
    divisor = pre.pixel_divisor if train[0].dtype == np.uint8 else None
    if divisor is not None:
        pre.fit(train[0][:1], train[1][:1])  # a lone scale op learns nothing; one row sets the raw shape
        return tuple(None if part is None else  # type: ignore[return-value]
                     Split.scaled(_shared_tensor(part[0]), _labels(part[1], raw.task), divisor)
                     for part in (train, val, test))
    fitted = _to_split(pre.fit_transform(*train), train[1], raw.task, raw.source)
    return (fitted, None if val is None else _to_split(pre.transform(val[0]), val[1], raw.task, raw.source),
            _to_split(pre.transform(test[0]), test[1], raw.task, raw.source))


def _shared_tensor(x: np.ndarray) -> torch.Tensor:
    """A tensor over ``x``'s memory (the decoded set may be a read-only cache: splits never
    write to their inputs, so torch's warning about read-only arrays does not apply)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(x))


def _labels(y: np.ndarray, task: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64 if task == "classification" else np.float32))


def _to_split(x: np.ndarray, y: np.ndarray, task: str, source: str) -> Split:
    if not _all_finite(x):
        raise DataError(f"non-finite inputs in {source} after preprocessing")
    # a float set with no preprocessing is the reader's array itself (an IDX set's read-only cache)
    return Split(_shared_tensor(x.astype(np.float32, copy=False)), _labels(y, task))


def _all_finite(x: np.ndarray) -> bool:
    """NaN propagates through min and max and an inf is one of them: two passes, no full-size
    boolean temporary (fresh memory is what a large set's load pays for)."""
    return x.size == 0 or bool(np.isfinite(x.min()) and np.isfinite(x.max()))


# ---------------------------------------------------------------------------- listing
@dataclass(frozen=True)
class DatasetRow:
    """One line of ``dlopt datasets``."""

    name: str
    task: str
    input_shape: tuple[int, ...]
    num_classes: int
    n_train: int
    n_test: int
    source: str


def list_datasets(data_dir: str | os.PathLike | None = None) -> list[DatasetRow]:
    """Built-in datasets (from their registry info, nothing loaded) plus IDX sets in the data
    directory (read from their headers)."""
    root = resolve_data_dir(data_dir)
    rows = [
        DatasetRow(e.name, e.info["task"], tuple(e.info["input_shape"]), e.info["num_classes"],
                   e.info["n_train"], e.info["n_test"], _source(e.info, root))
        for e in DATASETS
    ]
    for name, folder in data_dir_sets(data_dir).items():
        try:
            rows.append(_idx_row(name, folder))
        except (DataError, ValueError) as exc:  # a bad header must not break the listing
            log.warning("skipping %s: %s", folder, exc)
    return sorted(rows, key=lambda r: r.name)


def _source(info: dict[str, Any], root: Path | None) -> str:
    """Where a set comes from; for data-dir sets, the folder found or what is missing."""
    folder = info.get("folder")
    if folder is None:
        return info["source"]
    if root is not None and (root / folder).is_dir():
        return f"{root / folder} (IDX)"
    return f"not found: needs <data-dir>/{folder} (${DATA_DIR_ENV})"


def _idx_row(name: str, folder: Path) -> DatasetRow:
    n_train, h, w = read_idx_shape(folder / IDX_FILES["train_x"])
    n_test = read_idx_shape(folder / IDX_FILES["test_x"])[0]
    labels = read_idx(folder / IDX_FILES["train_y"])  # ~60 KB: cheap enough to count classes
    return DatasetRow(name, "classification", (1, h, w), int(labels.max()) + 1 if len(labels) else 0,
                      n_train, n_test, f"{folder} (IDX)")
