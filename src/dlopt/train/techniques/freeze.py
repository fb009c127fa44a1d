"""Freezing for fine-tuning: by parameter-name glob or everything up to a layer, and
unfreezing at a given epoch (gradual fine-tuning).

Frozen parameters stay in the optimizer with ``requires_grad=False``: their gradient stays
None, so every optimizer skips them, and unfreezing needs no new optimizer. A BatchNorm layer
whose weight and bias are frozen runs in eval mode while frozen (the usual fine-tuning
practice): its running statistics stay the pre-trained ones instead of drifting to the new
data under frozen weights.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterable

from torch import nn

from dlopt.errors import ConfigError

__all__ = ["Unfreeze", "freeze", "frozen_batchnorms", "frozen_names"]


def frozen_names(module: nn.Module, patterns: Iterable[str] = (), until: str | None = None) -> list[str]:
    """Names of the parameters matching any glob in ``patterns``, plus every parameter
    registered before the first one whose name starts with ``until`` (``until`` itself
    stays trainable)."""
    names = [n for n, _ in module.named_parameters()]
    pats = list(patterns)
    for pat in pats:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            raise ConfigError(f"train.transfer.freeze: pattern {pat!r} matches no parameter; "
                              f"parameters: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}")
    out = {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)}
    if until is not None:
        idx = next((i for i, n in enumerate(names) if n == until or n.startswith(until + ".")), None)
        if idx is None:
            raise ConfigError(f"train.transfer.freeze_until={until!r}: no such layer; "
                              f"parameters: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}")
        out.update(names[:idx])
    return [n for n in names if n in out]


def freeze(module: nn.Module, names: Iterable[str], *, trainable: bool = False) -> int:
    """Set ``requires_grad`` of the named parameters; returns how many were changed."""
    wanted = set(names)
    count = 0
    for n, p in module.named_parameters():
        if n in wanted:
            p.requires_grad_(trainable)
            count += 1
    return count


def frozen_batchnorms(module: nn.Module, names: Iterable[str]) -> list[nn.Module]:
    """The BatchNorm layers of ``module`` that have parameters, all of them in ``names``."""
    frozen = set(names)
    out = []
    for prefix, m in module.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = [f"{prefix}.{n}" if prefix else n for n, _ in m.named_parameters()]
            if params and frozen.issuperset(params):
                out.append(m)
    return out


class Unfreeze:
    """Freezes ``names`` at fit start and makes them trainable again from epoch ``at_epoch``
    (0-based count of completed epochs; None keeps them frozen). Each epoch starts after the
    loop's ``module.train()``: the frozen BatchNorm layers are put in eval mode there, until
    ``at_epoch`` leaves them in training mode."""

    order = -40

    def __init__(self, names: list[str], at_epoch: int | None = None) -> None:
        self.names, self.at_epoch = names, at_epoch
        self._norms: list[nn.Module] = []

    def on_fit_start(self, state: Any) -> None:
        freeze(state.module, self.names)
        self._norms = frozen_batchnorms(state.module, self.names)

    def on_epoch_start(self, state: Any) -> None:
        if self.at_epoch is not None and state.epoch >= self.at_epoch:
            freeze(state.module, self.names, trainable=True)
            return
        for m in self._norms:
            m.eval()
