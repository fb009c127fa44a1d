"""Raw data as read from a source, before splitting and preprocessing (numpy only, no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Task = Literal["classification", "regression"]
Kind = Literal["image", "sequence", "tabular"]


@dataclass
class RawData:
    """Arrays straight from a reader.

    ``x`` is uint8/float image data ``(N, C, H, W)``, a sequence ``(N, C, L)`` or a table
    ``(N, F)`` (object dtype when some columns are strings). ``x_test``/``y_test`` hold the
    official test split when the set has one. ``scale`` is the divisor that maps raw image
    values to [0, 1] (255 for uint8 images), 0 when no scaling applies.
    """

    x: np.ndarray
    y: np.ndarray
    task: Task
    kind: Kind
    source: str
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    feature_names: list[str] = field(default_factory=list)
    scale: float = 0.0
    num_classes: int | None = None  # fixed class count; None: inferred from the labels
    skipped: int = 0  # bad samples skipped (imagefolder, bad_samples="skip")

    @property
    def has_test(self) -> bool:
        return self.x_test is not None
