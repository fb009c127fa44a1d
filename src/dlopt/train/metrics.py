"""Evaluation metrics by name, batched prediction, and the defaults per task.

A metric is ``f(y_true, scores) -> float`` on numpy arrays: ``scores`` are class
probabilities ``(N, C)`` for classification and predictions ``(N,)`` for regression. The
scikit-learn implementations are used where one exists. Evaluation runs the model once over
the split under ``torch.inference_mode`` and syncs once.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from dlopt.data._types import Split
from dlopt.registry import Registry

__all__ = [
    "METRICS", "DEFAULT_METRICS", "default_metrics", "compute_metrics", "predict_outputs",
    "evaluate_model", "scores_from_outputs", "confusion_matrix", "best_mode", "validation_metrics",
]

Metric = Callable[[np.ndarray, np.ndarray], float]

#: name -> metric(y_true, scores). Info: ``task``, ``mode`` ("max" | "min": which way is better).
METRICS: Registry[float] = Registry("metric")

#: What ``summary.json`` and each epoch report, by task (``loss`` is always added).
DEFAULT_METRICS = {
    "classification": ("accuracy", "f1_macro", "auc"),
    "regression": ("mse", "mae", "r2"),
}


@METRICS.register("accuracy", task="classification", mode="max")
def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """Fraction of samples whose top class is right."""
    return float((p.argmax(1) == y).mean())


@METRICS.register("top5", task="classification", mode="max")
def top5(y: np.ndarray, p: np.ndarray) -> float:
    """Fraction of samples whose label is among the 5 highest scores."""
    from sklearn.metrics import top_k_accuracy_score

    if p.shape[1] <= 5:
        return 1.0
    return float(top_k_accuracy_score(y, p, k=5, labels=np.arange(p.shape[1])))


def _per_class(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, predicted counts and true counts of each class present in the labels
    or the predictions (the classes scikit-learn averages over by default)."""
    c = p.shape[1]
    m = np.bincount(y * c + p.argmax(1), minlength=c * c).reshape(c, c)
    pred, true = m.sum(0).astype(np.float64), m.sum(1).astype(np.float64)
    present = (pred > 0) | (true > 0)
    return np.diag(m).astype(np.float64)[present], pred[present], true[present]


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # zero_division=0, as scikit-learn's precision/recall/f1 with zero_division=0
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


# Macro scores are computed from the confusion matrix (the same definitions as scikit-learn's
# ``*_score(average="macro", zero_division=0)``, tested against it) because the scikit-learn
# calls cost ~20 ms each in argument validation, every epoch. Like scikit-learn's, they average
# over the classes present in labels or predictions: an output no sample has and none is
# predicted as (labels {1, 2} on three outputs) would pull a perfect score down to 2/3.
@METRICS.register("precision_macro", task="classification", mode="max")
def precision_macro(y: np.ndarray, p: np.ndarray) -> float:
    """Unweighted mean over the present classes of TP / predicted."""
    tp, pred, _ = _per_class(y, p)
    return float(_ratio(tp, pred).mean())


@METRICS.register("recall_macro", task="classification", mode="max")
def recall_macro(y: np.ndarray, p: np.ndarray) -> float:
    """Unweighted mean over the present classes of TP / actual."""
    tp, _, true = _per_class(y, p)
    return float(_ratio(tp, true).mean())


@METRICS.register("f1_macro", task="classification", mode="max")
def f1_macro(y: np.ndarray, p: np.ndarray) -> float:
    """Unweighted mean over the present classes of 2 TP / (predicted + actual)."""
    tp, pred, true = _per_class(y, p)
    return float(_ratio(2 * tp, pred + true).mean())


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties sharing their average rank (scipy's ``rankdata``)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new_group = np.empty(len(x), dtype=bool)
    new_group[0] = True
    np.not_equal(xs[1:], xs[:-1], out=new_group[1:])
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], len(x))  # 1-based rank of each group's last member
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]
    return ranks


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney U / (n_pos * n_neg): the area under the ROC curve, ties counted half."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = _average_ranks(score)[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


# Rank-based rather than scikit-learn's roc_auc_score (same values, tested against it): the
# one-vs-rest call spent ~0.5 s per evaluation in argument validation and ROC curves. The ranks
# are computed here because importing scipy.stats for rankdata costs ~1 s per process.
@METRICS.register("auc", task="classification", mode="max")
def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC: binary on the positive class, one-vs-rest macro over the classes present in
    ``y`` for more outputs (NaN with fewer than two classes present: it is undefined)."""
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    if p.shape[1] == 2:
        return _binary_auc(y == 1, p[:, 1])
    return float(np.mean([_binary_auc(y == c, p[:, c]) for c in present]))


@METRICS.register("mse", task="regression", mode="min")
def mse(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error."""
    return float(np.mean((p - y) ** 2))


@METRICS.register("mae", task="regression", mode="min")
def mae(y: np.ndarray, p: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(p - y)))


@METRICS.register("r2", task="regression", mode="max")
def r2(y: np.ndarray, p: np.ndarray) -> float:
    """Coefficient of determination."""
    from sklearn.metrics import r2_score

    return float(r2_score(y, p)) if len(y) > 1 else float("nan")


def default_metrics(task: str) -> tuple[str, ...]:
    return DEFAULT_METRICS[task]


def best_mode(metric: str) -> str:
    """"max" or "min" for a (possibly ``val_``-prefixed) metric name; losses are "min"."""
    name = metric.removeprefix("val_").removeprefix("test_")
    if name == "loss" or name.endswith("_loss"):
        return "min"
    return METRICS.get(name).info["mode"]


def scores_from_outputs(outputs: torch.Tensor, task: str) -> torch.Tensor:
    """Probabilities ``(N, C)`` from logits (one logit = sigmoid of the positive class), or
    predictions ``(N,)`` for regression; float32, on the outputs' device."""
    # torch, not dlopt.train.class_probabilities (numpy, float64, for ONNX outputs): every
    # validation pass scores here, and a test holds the two to the same probabilities
    outputs = outputs.float()
    if task == "regression":
        return outputs.reshape(len(outputs), -1)[:, 0]
    if outputs.dim() < 2 or outputs.shape[1] == 1:
        p = torch.sigmoid(outputs.reshape(len(outputs)))
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(outputs, dim=1)


def confusion_matrix(y: np.ndarray, p: np.ndarray) -> list[list[int]]:
    """Rows: true class, columns: predicted class."""
    c = p.shape[1]
    m = np.bincount(y * c + p.argmax(1), minlength=c * c).reshape(c, c)
    return m.tolist()


def compute_metrics(outputs: torch.Tensor, targets: torch.Tensor, *, task: str,
                    names: Iterable[str] | None = None, loss_fn: Callable | None = None,
                    prefix: str = "") -> dict[str, float]:
    """``{prefix+name: value}`` for ``names`` (default: by task) plus ``loss`` when given."""
    out: dict[str, float] = {}
    if loss_fn is not None:
        out[f"{prefix}loss"] = float(loss_fn(outputs.float(), targets))
    y = targets.cpu().numpy()
    s = scores_from_outputs(outputs, task).cpu().numpy()
    finite = bool(np.isfinite(s).all())  # a diverged model scores NaN, not an exception
    for name in names or default_metrics(task):
        value = METRICS.get(name).factory(y, s) if finite else float("nan")
        out[f"{prefix}{name}"] = value if math.isfinite(value) else float("nan")
    return out


@torch.inference_mode()
def predict_outputs(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                    forward_context: Callable[[], Any] | None = None,
                    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """All outputs and targets of ``batches`` (kept on the device; concatenated once)."""
    was_training = model.training
    model.eval()
    outs, ys = [], []
    try:
        for x, y in batches:
            if transform is not None:
                x = transform(x)
            if forward_context is not None:
                with forward_context():
                    outs.append(model(x))
            else:
                outs.append(model(x))
            ys.append(y)
    finally:
        model.train(was_training)
    if not outs:
        return torch.empty(0), torch.empty(0)
    return torch.cat(outs).float(), torch.cat(ys)


def evaluate_model(model: nn.Module, x: torch.Tensor | Split, y: torch.Tensor | None = None, *, task: str,
                   batch_size: int = 1024, device: torch.device | str = "cpu",
                   loss_fn: Callable | None = None, names: Iterable[str] | None = None,
                   prefix: str = "", forward_context: Callable[[], Any] | None = None,
                   transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """Metrics of ``model`` on tensors ``(x, y)`` or on a :class:`~dlopt.data.Split` ``x`` (a
    split held as uint8 is converted batch by batch), in batches of ``batch_size``."""
    if not isinstance(x, Split) and y is None:
        raise TypeError("evaluate_model: pass targets y with tensor inputs x (or a Split as x)")
    split = x if isinstance(x, Split) else Split(x, y)  # type: ignore[arg-type]
    batches = split.batches(batch_size, torch.device(device))
    outputs, targets = predict_outputs(model, batches, forward_context=forward_context,
                                       transform=transform)
    if len(targets) == 0:
        return {}
    return compute_metrics(outputs, targets, task=task, names=names, loss_fn=loss_fn, prefix=prefix)


def validation_metrics(task: str) -> tuple[str, ...]:
    """What a training run reports on its validation split each epoch (before the ``val_``
    prefix): the loss plus the task's default metrics."""
    return ("loss", *default_metrics(task))
