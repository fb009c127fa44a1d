"""The split the compression guard judges on.

The guard must never read the test split: choosing or rejecting a model on test figures leaks
test into the choice (``dlopt tune`` refuses the same). A run trained without a validation
split (``val_fraction: 0``) therefore gets one carved from its *training* split: a seeded,
stratified ``GUARD_FRACTION`` of the rows, moved out of ``train`` so that fine-tuning,
calibration and QAT never see them. The source model did train on those rows, so its
"before" figure is optimistic and the guard errs towards rejecting, never towards accepting.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from dlopt.errors import ConfigError

__all__ = ["GUARD_FRACTION", "with_guard_split"]

log = logging.getLogger(__name__)

# 10 %: the training engine's default val_fraction, so a carved split is sized like a usual one
GUARD_FRACTION = 0.1


def with_guard_split(bundle: Any, *, seed: int) -> tuple[Any, dict[str, Any]]:
    """``(bundle, record)``: ``bundle`` as is when it has a validation split, else a copy whose
    ``val`` is a held-out ``GUARD_FRACTION`` of ``train`` (seeded by ``seed``) and whose
    ``train`` is the rest. ``record`` names the split the guard judges on (for summary.json)."""
    from dlopt.data._split import split_sizes, take

    if bundle.val is not None and len(bundle.val):
        return bundle, {"split": "val", "rows": len(bundle.val)}
    n = split_sizes(len(bundle.train), GUARD_FRACTION)
    if n == 0:
        raise ConfigError(f"the run has no validation split and {len(bundle.train)} training rows: "
                          f"the guard needs >= 2 to hold some out (never the test split)")
    guard, rest = take(bundle.train.y.numpy(), n, seed=seed, stratify=bundle.info.task == "classification")
    record = {"split": "train-holdout", "rows": int(n), "fraction": GUARD_FRACTION, "seed": int(seed),
              "note": "the run has no validation split: the guard judges on training rows held out "
                      "from fine-tuning and calibration (the source trained on them), never on test"}
    log.warning("no validation split in the source run: the guard judges on %d held-out training rows "
                "(%g of train, seed %d), not on test", n, GUARD_FRACTION, seed)
    carved = dataclasses.replace(bundle, train=bundle.train.subset(np.sort(rest)),
                                 val=bundle.train.subset(np.sort(guard)))
    return carved, record
