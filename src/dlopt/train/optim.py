"""Optimizers by name, and the parameter groups they train.

Every factory takes the parameter groups plus typed keyword arguments and returns a
``torch.optim`` optimizer using the fused implementation where torch has one (Adam, AdamW)
and the multi-tensor (``foreach``) one otherwise. Importing this module does not import
torch (config validation reads :data:`OPTIMIZERS`).

Parameter groups (:func:`param_groups`): weights get weight decay, norm scales and biases
(every parameter with fewer than 2 dimensions) do not unless ``decay_norm_and_bias``;
``layer_lr`` maps parameter-name globs to learning-rate multipliers (discriminative
fine-tuning: e.g. ``{"features.*": 0.1}``), the first matching glob wins.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any, Iterable

from dlopt.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["OPTIMIZERS", "create_optimizer", "param_groups"]

#: name -> factory(groups, *, lr, weight_decay, momentum, betas, eps) -> torch.optim.Optimizer.
#: Info: ``has_momentum`` (uses ``momentum``), ``uses_betas``, ``decoupled`` (weight decay
#: is decoupled from the gradient, AdamW style; otherwise it is an L2 term in the gradient).
OPTIMIZERS: Registry[Any] = Registry("optimizer")


def _sgd(groups: list[dict], *, lr: float, weight_decay: float, momentum: float, nesterov: bool) -> Any:
    import torch

    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov,
                           weight_decay=weight_decay, foreach=True)


@OPTIMIZERS.register("sgd", has_momentum=False, uses_betas=False, decoupled=False)
def sgd(groups: list[dict], *, lr: float, weight_decay: float = 0.0, **_: Any) -> Any:
    """Plain stochastic gradient descent."""
    return _sgd(groups, lr=lr, weight_decay=weight_decay, momentum=0.0, nesterov=False)


@OPTIMIZERS.register("momentum", has_momentum=True, uses_betas=False, decoupled=False)
def momentum(groups: list[dict], *, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
             **_: Any) -> Any:
    """SGD with heavy-ball momentum."""
    return _sgd(groups, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=False)


@OPTIMIZERS.register("nesterov", has_momentum=True, uses_betas=False, decoupled=False)
def nesterov(groups: list[dict], *, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
             **_: Any) -> Any:
    """SGD with Nesterov momentum."""
    return _sgd(groups, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=True)


@OPTIMIZERS.register("adagrad", has_momentum=False, uses_betas=False, decoupled=False)
def adagrad(groups: list[dict], *, lr: float, weight_decay: float = 0.0, eps: float = 1e-10,
            **_: Any) -> Any:
    """Adagrad: per-parameter rates shrinking with the sum of squared gradients."""
    import torch

    return torch.optim.Adagrad(groups, lr=lr, weight_decay=weight_decay, eps=eps, foreach=True)


@OPTIMIZERS.register("adadelta", has_momentum=False, uses_betas=False, decoupled=False)
def adadelta(groups: list[dict], *, lr: float, weight_decay: float = 0.0, eps: float = 1e-6,
             **_: Any) -> Any:
    """Adadelta (its classic lr is 1.0)."""
    import torch

    return torch.optim.Adadelta(groups, lr=lr, weight_decay=weight_decay, eps=eps, foreach=True)


@OPTIMIZERS.register("rmsprop", has_momentum=False, uses_betas=False, decoupled=False)
def rmsprop(groups: list[dict], *, lr: float, weight_decay: float = 0.0, eps: float = 1e-8,
            **_: Any) -> Any:
    """RMSprop (smoothing 0.99, no momentum)."""
    import torch

    return torch.optim.RMSprop(groups, lr=lr, weight_decay=weight_decay, eps=eps, foreach=True)


# torch classes with a fused kernel (one kernel per parameter, no per-op dispatch). On this
# CPU a fused Adam step for LeNet-5 took ~0.37x the time of the foreach one (docs/speed.md).
_FUSED = frozenset({"Adam", "AdamW"})


def _implementation(cls_name: str, groups: list[dict]) -> dict[str, bool]:
    """``fused=True`` when torch has a fused kernel for the class and every parameter
    (floating point, on a device with fused kernels); ``foreach=True`` otherwise."""
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    params = [p for g in groups for p in g["params"]]
    devices = set(_get_fused_kernels_supported_devices())
    if cls_name in _FUSED and params and all(p.is_floating_point() and p.device.type in devices for p in params):
        return {"fused": True}
    return {"foreach": True}


def _adam_like(cls_name: str, groups: list[dict], *, lr: float, weight_decay: float,
               betas: tuple[float, float], eps: float) -> Any:
    import torch

    cls = getattr(torch.optim, cls_name)
    return cls(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
               **_implementation(cls_name, groups))


@OPTIMIZERS.register("adam", has_momentum=False, uses_betas=True, decoupled=False)
def adam(groups: list[dict], *, lr: float, weight_decay: float = 0.0,
         betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, **_: Any) -> Any:
    """Adam (weight decay as an L2 gradient term)."""
    return _adam_like("Adam", groups, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)


@OPTIMIZERS.register("adamw", has_momentum=False, uses_betas=True, decoupled=True)
def adamw(groups: list[dict], *, lr: float, weight_decay: float = 0.0,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, **_: Any) -> Any:
    """AdamW: Adam with decoupled weight decay."""
    return _adam_like("AdamW", groups, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)


@OPTIMIZERS.register("adamax", has_momentum=False, uses_betas=True, decoupled=False)
def adamax(groups: list[dict], *, lr: float, weight_decay: float = 0.0,
           betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, **_: Any) -> Any:
    """Adamax: Adam with the infinity norm."""
    return _adam_like("Adamax", groups, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)


@OPTIMIZERS.register("nadam", has_momentum=False, uses_betas=True, decoupled=False)
def nadam(groups: list[dict], *, lr: float, weight_decay: float = 0.0,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, **_: Any) -> Any:
    """NAdam: Adam with Nesterov momentum."""
    return _adam_like("NAdam", groups, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)


@OPTIMIZERS.register("radam", has_momentum=False, uses_betas=True, decoupled=False)
def radam(groups: list[dict], *, lr: float, weight_decay: float = 0.0,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, **_: Any) -> Any:
    """RAdam: Adam with a rectified (warm-up free) variance term."""
    return _adam_like("RAdam", groups, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)


def _no_decay(name: str, param: "torch.Tensor") -> bool:
    # Norm scales/shifts and biases are 1-D: decaying them only fights the normalization.
    return param.ndim < 2


def _lr_scale(name: str, layer_lr: dict[str, float]) -> float:
    for pattern, scale in layer_lr.items():
        if fnmatch.fnmatchcase(name, pattern):
            return float(scale)
    return 1.0


def param_groups(
    named_params: Iterable[tuple[str, "nn.Parameter"]],
    *,
    lr: float,
    weight_decay: float = 0.0,
    decay_norm_and_bias: bool = False,
    layer_lr: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups keyed by (learning-rate multiplier, decayed or not).

    Frozen parameters stay in the groups (their ``.grad`` is None, so every optimizer skips
    them) so that unfreezing later needs no new optimizer.
    """
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    named_params = list(named_params)
    for pattern in layer_lr or {}:
        if not any(fnmatch.fnmatchcase(n, pattern) for n, _ in named_params):
            from dlopt.errors import ConfigError

            names = ", ".join(n for n, _ in named_params[:6])
            raise ConfigError(f"train.optim.layer_lr: pattern {pattern!r} matches no parameter; "
                              f"parameters: {names}{', ...' if len(named_params) > 6 else ''}")
    for name, p in named_params:
        scale = _lr_scale(name, layer_lr or {})
        decay = weight_decay > 0 and (decay_norm_and_bias or not _no_decay(name, p))
        key = (scale, decay)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "lr": lr * scale,
                           "weight_decay": weight_decay if decay else 0.0}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


def create_optimizer(
    name: str,
    model: "nn.Module",
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    decay_norm_and_bias: bool = False,
    layer_lr: dict[str, float] | None = None,
) -> Any:
    """The optimizer ``name`` over ``model``'s parameters, grouped by :func:`param_groups`."""
    entry = OPTIMIZERS.get(name)
    groups = param_groups(model.named_parameters(), lr=lr, weight_decay=weight_decay,
                          decay_norm_and_bias=decay_norm_and_bias, layer_lr=layer_lr)
    opt = entry.factory(groups, lr=lr, weight_decay=weight_decay, momentum=momentum,
                        betas=betas, eps=eps)
    return opt
