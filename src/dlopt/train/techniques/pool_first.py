"""Max-pool before a monotone activation while training.

``maxpool(act(x)) == act(maxpool(x))`` for any non-decreasing ``act`` (ReLU, leaky ReLU, ELU,
tanh, ...), values and gradients alike, so the activation and its backward can run on the
pooled tensor: a quarter of the elements after a 2x2 pool. For LeNet-5 at batch 128 on the
2-core CPU a training step went from 18.7 to 16.2 ms (``bench/pool_first.py``, docs/speed.md).

Only parameter-free modules move, so state-dict keys, checkpoints and exact resume are
untouched. The rewrite is undone when the fit ends (also after an error): a trained model keeps
Conv -> ReLU adjacent, which ONNX Runtime fuses at inference. Layers that carry forward hooks
when the fit starts (e.g. a distillation hint, registered by a technique of lower ``order``)
are left alone, since their outputs would change.

The rewrite assumes every ``nn.Sequential`` runs whole. dlopt's zoo models do, so they get it
by default; a user's model may iterate or slice one (keeping a skip after an activation), so
it is rewritten only when ``train.pool_first: true`` is set explicitly, and only if one
eval-mode forward of a real batch gives the same output with and without the rewrite
(otherwise it is undone, with a warning).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

__all__ = ["PoolFirst", "checked_pool_first", "pool_first", "restore_pool_order"]

log = logging.getLogger(__name__)

_CHECK_ROWS = 64  # samples of the batch the opt-in check runs

_MONOTONE = (nn.ReLU, nn.ReLU6, nn.ELU, nn.SELU, nn.CELU, nn.Tanh, nn.Sigmoid, nn.Hardtanh,
             nn.Hardsigmoid, nn.Softplus, nn.LeakyReLU)
_MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


class _PoolThenAct(nn.Sequential):
    """The pool with the activation moved behind it."""


class _MovedAct(nn.Identity):
    """Where the activation was taken from."""


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks)


def _is_monotone(m: nn.Module) -> bool:
    if isinstance(m, nn.LeakyReLU):
        return m.negative_slope >= 0
    if isinstance(m, (nn.ELU, nn.CELU)):
        return m.alpha >= 0
    return isinstance(m, _MONOTONE)


def _spot(seq: nn.Sequential, i: int) -> tuple[nn.Sequential, int, nn.Module]:
    """Where ``seq[i]``'s output is made: descend through un-hooked trailing Sequentials."""
    parent, index, m = seq, i, seq[i]
    while (isinstance(m, nn.Sequential) and not isinstance(m, _PoolThenAct) and len(m)
           and not _hooked(m)):
        parent, index, m = m, len(m) - 1, m[len(m) - 1]
    return parent, index, m


def pool_first(module: nn.Module) -> int:
    """Move each monotone activation that feeds a max-pool behind the pool (in place).

    Looks inside ``nn.Sequential`` containers (the activation directly before the pool, or
    ending the block before it); returns how many were moved.
    """
    moved = 0
    for seq in [m for m in module.modules() if type(m) is not _PoolThenAct and isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            pool = seq[i + 1]
            if not isinstance(pool, _MAXPOOL) or pool.return_indices or _hooked(pool):
                continue
            parent, j, act = _spot(seq, i)
            if _is_monotone(act) and not _hooked(act):
                seq[i + 1] = _PoolThenAct(pool, act)
                parent[j] = _MovedAct()
                moved += 1
    return moved


def restore_pool_order(module: nn.Module) -> int:
    """Undo :func:`pool_first` (in place); returns how many activations went back."""
    restored = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(1, len(seq)):
            if isinstance(seq[i], _PoolThenAct):
                parent, j, spot = _spot(seq, i - 1)
                if isinstance(spot, _MovedAct):
                    parent[j], seq[i] = seq[i][1], seq[i][0]
                    restored += 1
    return restored


def _is_zoo(module: nn.Module) -> bool:
    return type(module).__module__.startswith("dlopt.models.")


def _same(a: Any, b: Any) -> bool:
    """Bitwise equality of two outputs (a tensor, or a tuple/list/dict of them)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


def checked_pool_first(module: nn.Module, x: torch.Tensor) -> int:
    """:func:`pool_first`, kept only if ``module`` (in eval mode, no grad) gives the same output
    on ``x`` with and without it; returns how many activations moved (0: undone or none)."""
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            before = module(x)
            moved = pool_first(module)
            if not moved:
                return 0
            try:
                kept = _same(before, module(x))
            except Exception:  # noqa: BLE001  the rewritten model failing is "not the same" too
                kept = False
    finally:
        module.train(was)
    if not kept:
        restore_pool_order(module)
        log.warning("train.pool_first: the rewrite changes what %s computes (its output on a training batch "
                    "differs), so it is off for this run", type(module).__name__)
        return 0
    return moved


class PoolFirst:
    """Rewrites the model at fit start (before channels_last/compile/EMA copy it) and undoes
    the rewrite on the trained module and on the evaluation copy when the fit closes.

    A zoo model is rewritten; any other module only when ``explicit`` (the run's config sets
    ``train.pool_first`` itself) and :func:`checked_pool_first` finds the same output."""

    order = 5

    def __init__(self, *, explicit: bool = False) -> None:
        self.explicit = explicit

    def on_fit_start(self, state: Any) -> None:
        module = state.module
        if _is_zoo(module):
            pool_first(module)
            return
        first_inputs = getattr(state.loader, "first_inputs", None)
        if not self.explicit or first_inputs is None:
            log.info("train.pool_first: %s is not a zoo model, left as written (set train.pool_first: true "
                     "to try the rewrite)", type(module).__name__)
            return
        checked_pool_first(module, first_inputs(_CHECK_ROWS))

    def on_close(self, state: Any) -> None:
        for m in {id(m): m for m in (state.module, state.eval_model) if m is not None}.values():
            restore_pool_order(m)
