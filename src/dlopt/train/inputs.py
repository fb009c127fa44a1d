"""Turn what a user hands to ``fit`` into a :class:`~dlopt.data.DataBundle`.

Accepted: a ``DataBundle``; ``(x, y)`` tensors or numpy arrays (a seeded ``val_fraction``
is carved off for validation and doubles as the test split); a mapping
``{"train": (x, y), "val": (x, y), "test": (x, y)}``; a torch ``Dataset`` or ``DataLoader``
of ``(x, y)`` samples (materialized into tensors once, so batching, shuffling and exact
resume work as for built-in sets). Integer targets mean classification with
``max(y) + 1`` classes, float targets regression.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dlopt.data import DataBundle, DatasetInfo, Split
from dlopt.errors import DataError

__all__ = ["bundle_from", "check_labels"]


def _tensor(a: Any, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu()
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError):
        raise DataError(f"{what} must be a tensor or numpy array, got {type(a).__name__}") from None


def _split(pair: Any, what: str) -> Split:
    if isinstance(pair, Split):
        return pair
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise DataError(f"{what} must be an (x, y) pair, got {type(pair).__name__}")
    x, y = _tensor(pair[0], f"{what} x"), _tensor(pair[1], f"{what} y")
    if len(x) != len(y):
        raise DataError(f"{what}: x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise DataError(f"{what} is empty")
    x = x.float()
    y = y.float() if y.dtype.is_floating_point else y.long()
    return Split(x.contiguous(), y.reshape(len(y)) if y.dtype.is_floating_point else y.reshape(-1))


def _materialize(ds: Dataset | DataLoader) -> Split:
    loader = ds if isinstance(ds, DataLoader) else DataLoader(ds, batch_size=1024, shuffle=False)
    xs, ys = [], []
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise DataError("a Dataset/DataLoader passed to fit must yield (x, y) samples")
        xs.append(_tensor(batch[0], "dataset x"))
        ys.append(_tensor(batch[1], "dataset y"))
    if not xs:
        raise DataError("the Dataset/DataLoader passed to fit is empty")
    return _split((torch.cat(xs), torch.cat(ys)), "dataset")


def _carve(split: Split, fraction: float, seed: int) -> tuple[Split, Split | None]:
    n_val = min(len(split) - 1, round(fraction * len(split))) if fraction > 0 else 0
    if n_val <= 0:
        return split, None
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val], order[n_val:]
    return (Split(split.x[train_idx], split.y[train_idx]), Split(split.x[val_idx], split.y[val_idx]))


def _info(name: str, splits: list[Split]) -> DatasetInfo:
    first = splits[0]
    if first.y.dtype.is_floating_point:
        return DatasetInfo(name=name, task="regression", input_shape=tuple(first.x.shape[1:]),
                           num_classes=0, n_train=len(first), n_test=len(splits[-1]))
    k = int(max(int(s.y.max()) for s in splits)) + 1
    return DatasetInfo(name=name, task="classification", input_shape=tuple(first.x.shape[1:]),
                       num_classes=k, class_names=[str(i) for i in range(k)],
                       n_train=len(first), n_test=len(splits[-1]))


def bundle_from(data: Any, *, val_fraction: float = 0.1, seed: int = 0, name: str = "custom") -> DataBundle:
    """A DataBundle for ``data`` (see the module docstring)."""
    if isinstance(data, DataBundle):
        return data
    if isinstance(data, Mapping):
        unknown = set(data) - {"train", "val", "test"}
        if "train" not in data or unknown:
            raise DataError(f"data mapping needs a 'train' pair and optional 'val'/'test'; got keys {sorted(data)}")
        train = _split(data["train"], "train")
        val = _split(data["val"], "val") if data.get("val") is not None else None
        if val is None:
            train, val = _carve(train, val_fraction, seed)
        test = _split(data["test"], "test") if data.get("test") is not None else (val or train)
    else:
        full = _materialize(data) if isinstance(data, (Dataset, DataLoader)) else _split(data, "data")
        train, val = _carve(full, val_fraction, seed)
        test = val or train
    splits = [s for s in (train, val, test) if s is not None]
    return DataBundle(info=_info(name, splits), train=train, val=val, test=test, preprocessor=None)


def check_labels(split: Split, out_features: int, *, task: str, what: str = "train") -> None:
    """Class ids must lie in ``[0, out_features)`` (one sync, once per fit)."""
    if task != "classification" or len(split) == 0:
        return
    lo, hi = int(split.y.min()), int(split.y.max())
    if lo < 0 or hi >= out_features:
        bad = lo if lo < 0 else hi
        raise DataError(f"{what} labels out of range: found {bad}, the model has {out_features} outputs "
                        f"(allowed 0..{out_features - 1})")
