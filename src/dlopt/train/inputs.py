"""Turn what a user hands to ``fit`` into a :class:`~dlopt.data.DataBundle`.

Accepted: a ``DataBundle``; ``(x, y)`` tensors or numpy arrays (a seeded ``val_fraction``
is carved off for validation and doubles as the test split); a mapping
``{"train": (x, y), "val": (x, y), "test": (x, y)}``; a torch ``Dataset`` or ``DataLoader``
of ``(x, y)`` samples (materialized into tensors once, so batching, shuffling and exact
resume work as for built-in sets). Integer (or bool) targets mean classification with
``max(y) + 1`` classes, float targets regression; either way one target per sample, shape
``(N,)`` or ``(N, 1)``, and ``x`` is one tensor (the model's single input).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dlopt.data import DataBundle, DatasetInfo, Split
from dlopt.errors import DataError

__all__ = ["bundle_from", "check_labels"]

log = logging.getLogger(__name__)


def _tensor(a: Any, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu()
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError):  # ragged nested lists
        raise DataError(f"{what} must be a tensor or numpy array, got {type(a).__name__}") from None
    if arr.dtype.kind not in "biuf":  # torch has no text or object tensors
        hint = "; encode text labels as class ids, e.g. np.unique(y, return_inverse=True)[1]"
        hint = hint if what.endswith(" y") else ""
        raise DataError(f"{what} has dtype {arr.dtype}; allowed: numbers (bool, integer or float){hint}")
    return torch.as_tensor(arr)


def _several_inputs(x: Any, n: int) -> bool:
    """Whether ``x`` is a tuple/list of whole input arrays (one per model input), not of samples."""
    return (isinstance(x, (tuple, list)) and len(x) != n and len(x) > 0
            and all(isinstance(a, (np.ndarray, torch.Tensor)) and a.ndim > 0 and len(a) == n for a in x))


def _one_input_error(what: str, given: str) -> DataError:
    return DataError(f"{what} x is {given}: fit feeds the model one input tensor; combine the inputs into "
                     f"one tensor (torch.cat / np.concatenate) or wrap the model so it takes one")


def _split(pair: Any, what: str) -> Split:
    if isinstance(pair, Split):
        return pair
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise DataError(f"{what} must be an (x, y) pair, got {type(pair).__name__}")
    y = _tensor(pair[1], f"{what} y")
    if _several_inputs(pair[0], len(y)):
        raise _one_input_error(what, f"a {type(pair[0]).__name__} of {len(pair[0])} arrays")
    x = _tensor(pair[0], f"{what} x")
    if len(x) != len(y):
        raise DataError(f"{what}: x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise DataError(f"{what} is empty")
    if y.numel() != len(y):
        raise DataError(f"{what} y has shape {tuple(y.shape)}; allowed: one target per sample, (N,) or (N, 1) "
                        f"(one-hot labels: pass y.argmax(1); several regression targets are not supported)")
    y = y.float() if y.dtype.is_floating_point else y.long()
    return Split(x.float().contiguous(), y.reshape(len(y)))


def _materialize(ds: Dataset | DataLoader) -> Split:
    loader = ds if isinstance(ds, DataLoader) else DataLoader(ds, batch_size=1024, shuffle=False)
    xs, ys = [], []
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise DataError("a Dataset/DataLoader passed to fit must yield (x, y) samples")
        if isinstance(batch[0], (tuple, list)):  # what default_collate makes of a tuple x
            raise _one_input_error("dataset", "a tuple/list per sample")
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
    """Targets must fit the model's outputs (one sync, once per fit): regression needs one
    output; class ids lie in ``[0, out_features)``, or are 0/1 for a single output (a binary
    classifier: its logit scores class 1). The train split also warns when the model has
    outputs no training label names."""
    if len(split) == 0:
        return
    if task != "classification":
        if out_features != 1:
            raise DataError(f"{what} targets are floats, which means regression, and regression needs a model "
                            f"with 1 output; this one has {out_features} (for classification pass integer class "
                            f"ids, e.g. y.astype(np.int64))")
        return
    lo, hi = int(split.y.min()), int(split.y.max())
    classes = max(out_features, 2)  # a single output scores class 1 against class 0
    if lo < 0 or hi >= classes:
        raise DataError(f"{what} labels out of range: found {lo if lo < 0 else hi}, {_outputs_rule(out_features)}")
    if what == "train" and hi + 1 < out_features:
        log.warning("the model has %d outputs, the train labels name %d classes (0..%d): predictions may name "
                    "classes %d..%d, which have no training examples", out_features, hi + 1, hi, hi + 1,
                    out_features - 1)


def _outputs_rule(out_features: int) -> str:
    if out_features == 1:
        return ("the model has 1 output (allowed 0..1: a binary classifier, loss bce); integer targets are "
                "class ids, for regression pass floats (e.g. y.astype(np.float32))")
    return f"the model has {out_features} outputs (allowed 0..{out_features - 1})"
