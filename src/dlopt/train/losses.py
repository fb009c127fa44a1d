"""Losses by name. Each factory returns ``loss(outputs, targets) -> scalar tensor``.

Outputs are the model's logits ``(N, C)`` (``(N, 1)`` for regression); targets are class ids
(int64) or float values, as the data layer hands them out. Label smoothing lives here, in
the loss, for every classification loss that can take it. Importing this module does not
import torch.

A loss is registered with the ``task`` its targets belong to. A classification loss on
regression (float) targets is refused; a regression loss on class ids regresses one-hot
targets, one output per class. Only ``bce`` (``single_logit``) takes a single-output
classifier, whose logit scores class 1 (``sigmoid > 0.5``, as the metrics read it).

``nll`` applies ``log_softmax`` before ``nll_loss``: zoo models return logits, and on a
model that already ends in ``log_softmax`` the extra one is the identity.
"""

from __future__ import annotations

from typing import Any, Callable

from dlopt.errors import ConfigError
from dlopt.registry import Registry

__all__ = ["LOSSES", "create_loss", "default_loss", "balanced_class_weights", "class_weights"]

LossFn = Callable[[Any, Any], Any]

#: name -> factory(*, label_smoothing, weight, huber_delta) -> LossFn. Info: ``task``, and
#: ``single_logit`` for a loss that trains a classifier with one output.
LOSSES: Registry[LossFn] = Registry("loss")


@LOSSES.register("cross_entropy", task="classification")
def cross_entropy(*, label_smoothing: float = 0.0, weight: Any = None, **_: Any) -> LossFn:
    """Softmax cross-entropy, optional label smoothing and class weights."""
    import torch.nn.functional as F

    return lambda out, y: F.cross_entropy(out, y, weight=weight, label_smoothing=label_smoothing)


@LOSSES.register("nll", task="classification")
def nll(*, label_smoothing: float = 0.0, weight: Any = None, **_: Any) -> LossFn:
    """Negative log-likelihood of ``log_softmax(outputs)`` (smoothing mixes in the uniform)."""
    import torch.nn.functional as F

    def f(out: Any, y: Any) -> Any:
        logp = F.log_softmax(out, dim=-1)
        loss = F.nll_loss(logp, y, weight=weight)
        if label_smoothing:
            loss = (1 - label_smoothing) * loss - label_smoothing * logp.mean(dim=-1).mean()
        return loss

    return f


def _one_hot_targets(out: Any, y: Any, smoothing: float) -> Any:
    import torch.nn.functional as F

    if y.dtype.is_floating_point:
        t = y.reshape(out.shape).to(out.dtype)
    else:
        t = F.one_hot(y, out.shape[-1]).to(out.dtype)
    if smoothing:
        t = t * (1 - smoothing) + smoothing / 2  # two outcomes per output unit
    return t


@LOSSES.register("bce", task="classification", single_logit=True)
def bce(*, label_smoothing: float = 0.0, **_: Any) -> LossFn:
    """Binary cross-entropy with logits, one sigmoid per output (one-hot class targets;
    a single output unit reads class 1 as the positive)."""
    import torch.nn.functional as F

    def f(out: Any, y: Any) -> Any:
        if not y.dtype.is_floating_point and (out.dim() < 2 or out.shape[-1] == 1):
            y = y.float()  # a single logit's target: 1 for class 1
        t = _one_hot_targets(out, y, label_smoothing)
        return F.binary_cross_entropy_with_logits(out, t, pos_weight=None)

    return f


def _regression_target(out: Any, y: Any) -> Any:
    # (N,) targets against (N, 1) outputs; class ids become one-hot for classifier outputs
    if y.dtype.is_floating_point:
        return y.reshape(out.shape).to(out.dtype)
    import torch.nn.functional as F

    return F.one_hot(y, out.shape[-1]).to(out.dtype)


@LOSSES.register("mse", task="regression")
def mse(**_: Any) -> LossFn:
    """Mean squared error."""
    import torch.nn.functional as F

    return lambda out, y: F.mse_loss(out, _regression_target(out, y))


@LOSSES.register("mae", task="regression")
def mae(**_: Any) -> LossFn:
    """Mean absolute error (L1)."""
    import torch.nn.functional as F

    return lambda out, y: F.l1_loss(out, _regression_target(out, y))


@LOSSES.register("huber", task="regression")
def huber(*, huber_delta: float = 1.0, **_: Any) -> LossFn:
    """Huber: squared below ``huber_delta``, linear above."""
    import torch.nn.functional as F

    return lambda out, y: F.huber_loss(out, _regression_target(out, y), delta=huber_delta)


@LOSSES.register("hinge", task="classification")
def hinge(*, weight: Any = None, **_: Any) -> LossFn:
    """Multi-class hinge (Crammer-Singer style margin 1, ``multi_margin_loss``)."""
    import torch.nn.functional as F

    return lambda out, y: F.multi_margin_loss(out, y, weight=weight)


def default_loss(task: str) -> str:
    """The loss ``auto`` stands for: cross-entropy for classification, MSE for regression."""
    return "cross_entropy" if task == "classification" else "mse"


def balanced_class_weights(y: Any, num_classes: int) -> Any:
    """``n / (k * count_c)`` per class (scikit-learn's "balanced"); absent classes get 0."""
    import torch

    counts = torch.bincount(y.reshape(-1).cpu(), minlength=num_classes).double()
    w = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), 0.0)
    return w.float()


def class_weights(mode: str, *, task: str, y: Any, num_classes: int) -> Any:
    """The loss weights ``train.loss.class_weights`` asks for (None for ``none``), from the
    training labels ``y``. Regression has no classes: ``balanced`` there is a ConfigError."""
    if mode == "none":
        return None
    if task != "classification":
        raise ConfigError(f"train.loss.class_weights={mode!r} weighs classes, but this data is {task}; "
                          f"use class_weights: none")
    return balanced_class_weights(y, num_classes)


def create_loss(name: str, *, task: str, label_smoothing: float = 0.0, weight: Any = None,
                huber_delta: float = 1.0, out_features: int | None = None) -> LossFn:
    """Loss ``name`` (``auto`` picks by task). A setting the loss does not use (a factory
    declares the options it applies) is a ConfigError, not silently dropped, and so is a
    classification loss on regression data, or on a single-output model (``out_features``,
    the model's output width, when the caller knows it) unless the loss reads one logit."""
    entry = LOSSES.get(default_loss(task) if name == "auto" else name)
    shown = entry.name if name == entry.name else f"{name} ({entry.name})"
    _check_task(entry.info["task"], task, shown)
    for option, key, used in (("label_smoothing", "label_smoothing", label_smoothing > 0),
                              ("weight", "class_weights", weight is not None)):
        if used and option not in entry.params():
            takers = [e.name for e in LOSSES if option in e.params()]
            raise ConfigError(f"train.loss.{key}: loss {entry.name!r} does not apply it; "
                              f"allowed with: {', '.join(takers)}")
    if task == "classification" and out_features == 1 and not entry.info.get("single_logit"):
        _refuse_single_output(shown)
    return entry.factory(label_smoothing=label_smoothing, weight=weight, huber_delta=huber_delta)


def _check_task(loss_task: str, task: str, shown: str) -> None:
    """Class-id losses cannot read float targets (the reverse regresses one-hot targets)."""
    if loss_task == "classification" and task != "classification":
        allowed = [e.name for e in LOSSES if e.info["task"] == task]
        raise ConfigError(f"train.loss.name={shown!r} is a classification loss (class ids), but this data is {task} "
                          f"(float targets); allowed for {task}: {', '.join(allowed)}, auto")


def _refuse_single_output(shown: str) -> None:
    """A single-output classifier's logit means class 1 only to ``bce`` (cross-entropy over one
    logit is 0, MSE would move the 0.5 threshold)."""
    single = [e.name for e in LOSSES if e.info.get("single_logit")]
    raise ConfigError(f"train.loss.name={shown!r} needs one output per class, but the model has 1 output; "
                      f"a single-output (binary) classifier trains with: {', '.join(single)}")
