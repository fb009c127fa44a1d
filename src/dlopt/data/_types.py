"""The data contract every other room relies on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

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


class Split:
    """One split as two tensors: ``x`` float32 (N, *input_shape), ``y`` int64 labels or float32 targets.

    An image split whose only preprocessing is dividing the raw pixels may instead hold the
    uint8 ``pixels`` and the ``divisor`` (:meth:`scaled`): a quarter of the memory, and nothing
    to allocate at load time. ``x`` is then computed on first use (and kept); the in-memory
    loader never needs it, it divides each batch it gathers (:meth:`rows`).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._x: torch.Tensor | None = x
        self.y = y
        self.pixels: torch.Tensor | None = None
        self.divisor: float | None = None
        self._divisor_t: torch.Tensor | None = None

    @classmethod
    def scaled(cls, pixels: torch.Tensor, y: torch.Tensor, divisor: float) -> "Split":
        """A split of uint8 ``pixels`` whose inputs are ``pixels / divisor`` in float32."""
        split = cls(None, y)  # type: ignore[arg-type]
        split.pixels, split.divisor = pixels, float(divisor)
        # a tensor on the pixels' device: CUDA multiplies by the reciprocal when it divides by
        # a CPU scalar, which can differ in the last bit from numpy's float32 division
        split._divisor_t = torch.tensor(split.divisor, dtype=torch.float32, device=pixels.device)
        return split

    @property
    def x(self) -> torch.Tensor:
        """The float32 inputs (computed from ``pixels`` on first use)."""
        if self._x is None:
            self._x = self.rows(slice(None))
        return self._x

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape, without computing ``x``."""
        src = self.pixels if self._x is None else self._x
        return tuple(int(d) for d in src.shape[1:])  # type: ignore[union-attr]

    def rows(self, index: slice | torch.Tensor) -> torch.Tensor:
        """Float32 inputs of the samples at ``index`` (a slice: a view where ``x`` is held;
        an index tensor: a gather)."""
        src = self.x if self.pixels is None else self.pixels
        picked = src[index] if isinstance(index, slice) else src.index_select(0, index)
        # uint8 / a float32 0-dim tensor: float32 in one pass, bit for bit numpy's x / divisor
        return picked if self.pixels is None else torch.div(picked, self._divisor_t)

    def subset(self, index: Any) -> "Split":
        """The samples at ``index`` (held uint8 pixels stay held)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        if self.pixels is not None:
            return Split.scaled(self.pixels.index_select(0, idx), self.y[idx], self.divisor)  # type: ignore[arg-type]
        return Split(self.x.index_select(0, idx), self.y[idx])

    def value_range(self) -> tuple[float, float]:
        """The smallest and largest input value (held pixels: read as uint8, then divided)."""
        if len(self) == 0:
            return (0.0, 0.0)
        if self.pixels is not None:
            return (int(self.pixels.min()) / self.divisor, int(self.pixels.max()) / self.divisor)  # type: ignore[operator]
        return (float(self.x.min()), float(self.x.max()))

    def batches(self, batch_size: int, device: torch.device | str | None = None,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(inputs, targets)`` in order, ``batch_size`` rows at a time (on ``device`` if given)."""
        for i in range(0, len(self), batch_size):
            rows = slice(i, i + batch_size)
            x, y = self.rows(rows), self.y[rows]
            yield (x, y) if device is None else (x.to(device), y.to(device))

    def to(self, device: torch.device | str) -> "Split":
        """This split with its tensors on ``device`` (held pixels move as pixels)."""
        if self.pixels is None:
            return Split(self.x.to(device), self.y.to(device))
        return Split.scaled(self.pixels.to(device), self.y.to(device), self.divisor)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self.y.shape[0])


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
