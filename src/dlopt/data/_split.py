"""Deterministic, stratified-where-possible splits from a seed (numpy + scikit-learn)."""

from __future__ import annotations

import numpy as np


def take(y: np.ndarray, size: int, *, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(taken, rest)``: the first ``size`` of a seeded shuffle, stratified by ``y``
    when every class can be represented on both sides; a plain seeded shuffle otherwise."""
    from sklearn.model_selection import train_test_split

    n = len(y)
    idx = np.arange(n)
    if size >= n:
        return np.random.default_rng(seed).permutation(n), idx[:0]
    strat = y if stratify and _can_stratify(y, size) else None
    taken, rest = train_test_split(idx, train_size=size, stratify=strat, random_state=seed)
    return taken, rest


def _can_stratify(y: np.ndarray, size: int) -> bool:
    _, counts = np.unique(y, return_counts=True)
    k = len(counts)
    return counts.min() >= 2 and k <= size <= len(y) - k


def split_sizes(n: int, fraction: float) -> int:
    """How many of ``n`` samples a ``fraction`` carves out (at least 1 when fraction > 0)."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(fraction * n)))
