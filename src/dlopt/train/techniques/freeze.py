"""Freezing for fine-tuning: by parameter-name glob or everything up to a layer, and
unfreezing at a given epoch (gradual fine-tuning).

Frozen parameters stay in the optimizer with ``requires_grad=False``: their gradient stays
None, so every optimizer skips them, and unfreezing needs no new optimizer. A BatchNorm layer
whose weight and bias are frozen runs in eval mode while frozen (the usual fine-tuning
practice): its running statistics stay the pre-trained ones instead of drifting to the new
data under frozen weights. One without affine parameters has no names to freeze: it counts
as frozen when the globs or ``freeze_until`` would freeze its ``weight`` and ``bias``.
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
    stays trainable). A BatchNorm without affine parameters counts with the ``weight`` and
    ``bias`` it would have: a glob or ``until`` naming only it is no mistake."""
    names, _ = _names_with_stand_ins(module)
    pats = list(patterns)
    listed = f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
    for pat in pats:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            raise ConfigError(f"train.transfer.freeze: pattern {pat!r} matches no parameter; "
                              f"parameters: {listed}")
    if until is not None and _until_index(names, until) is None:
        raise ConfigError(f"train.transfer.freeze_until={until!r}: no such layer; parameters: {listed}")
    params = {n for n, _ in module.named_parameters()}
    return [n for n in _selected(names, pats, until) if n in params]


def _until_index(names: list[str], until: str) -> int | None:
    return next((i for i, n in enumerate(names) if n == until or n.startswith(until + ".")), None)


def _selected(names: list[str], patterns: list[str], until: str | None) -> list[str]:
    """``names`` (in registration order) that the globs or ``until`` freeze."""
    out = {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
    idx = None if until is None else _until_index(names, until)
    if idx is not None:
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


def frozen_batchnorms(module: nn.Module, patterns: Iterable[str] = (), until: str | None = None, *,
                      names: Iterable[str] = ()) -> list[nn.Module]:
    """The BatchNorm layers in the part of ``module`` that ``names`` (exact parameter names) or
    ``patterns``/``until`` (as :func:`frozen_names`) freeze: all their parameters frozen or, for
    one without affine parameters (freezing goes by parameter names), the ``weight`` and
    ``bias`` it would have."""
    every, norms = _names_with_stand_ins(module)
    chosen = set(names).union(_selected(every, list(patterns), until))
    return [m for m, decided in norms if chosen.issuperset(decided)]


def _names_with_stand_ins(module: nn.Module) -> tuple[list[str], list[tuple[nn.Module, list[str]]]]:
    """Parameter names in registration order (as ``named_parameters``: a shared one under its
    first name), a BatchNorm without affine parameters standing in with ``weight`` and
    ``bias`` where it is registered; and each BatchNorm with the names that decide whether it
    is frozen."""
    names: list[str] = []
    norms = []
    seen: set[int] = set()
    for prefix, m in module.named_modules():
        mine = [(f"{prefix}.{n}" if prefix else n, p) for n, p in m.named_parameters(recurse=False)]
        own = [n for n, p in mine if id(p) not in seen]
        seen.update(id(p) for _, p in mine)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            stand_ins = [f"{prefix}.{n}" if prefix else n for n in ("weight", "bias")]
            own = own if m.affine else stand_ins
            norms.append((m, [n for n, _ in mine] if m.affine else stand_ins))
        names += own
    return names, norms


class Unfreeze:
    """Freezes ``names`` at fit start and makes them trainable again from epoch ``at_epoch``
    (0-based count of completed epochs; None keeps them frozen). Each epoch starts after the
    loop's ``module.train()``: the frozen BatchNorm layers are put in eval mode there, until
    ``at_epoch`` leaves them in training mode. ``patterns``/``until``, the globs and layer
    that chose ``names``, also find the BatchNorms without parameters in the frozen part
    (``names`` are matched exactly, never as globs)."""

    order = -40

    def __init__(self, names: list[str], at_epoch: int | None = None, *, patterns: Iterable[str] = (),
                 until: str | None = None) -> None:
        self.names, self.at_epoch = names, at_epoch
        self.patterns, self.until = list(patterns), until
        self._norms: list[nn.Module] = []

    def on_fit_start(self, state: Any) -> None:
        freeze(state.module, self.names)
        self._norms = frozen_batchnorms(state.module, self.patterns, self.until, names=self.names)

    def on_epoch_start(self, state: Any) -> None:
        if self.at_epoch is not None and state.epoch >= self.at_epoch:
            freeze(state.module, self.names, trainable=True)
            return
        for m in self._norms:
            m.eval()
