"""The data contract every other room relies on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: task, per-sample input shape, classes and provenance."""

    name: str
    task: Task
    input_shape: tuple[int, ...]
    num_classes: int  # 0 for regression
    class_names: list[str] = field(default_factory=list)
    source: str = ""
    n_train: int = 0
    n_test: int = 0

    @property
    def out_features(self) -> int:
        """Width of the model's output layer."""
        return self.num_classes if self.task == "classification" else 1


@dataclass
class Split:
    """One split as two tensors: ``x`` float32 (N, *input_shape), ``y`` int64 labels or float32 targets."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class DataBundle:
    """A loaded dataset: info, the three splits (val may be empty) and the fitted preprocessor.

    ``preprocessor`` maps raw inputs to model inputs; it is saved with a run and applied again
    by ``predict``. ``state`` is its JSON-able description.
    """

    info: DatasetInfo
    train: Split
    val: Split | None
    test: Split
    preprocessor: Any = None
