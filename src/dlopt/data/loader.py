"""Batch loaders that hand out ``(x, y)`` already on the training device.

:class:`InMemoryLoader` is the fast path: the whole split sits on the device as two tensors
and each epoch draws batches through one seeded ``torch.randperm`` (no per-sample Python,
no worker processes). :class:`DataLoaderWrapper` covers user ``Dataset``s. Both resume
exactly from ``state_dict()`` (epoch, batch position, seed) and shard for DDP: every rank
takes a disjoint slice of the same seeded permutation.

A model with BatchNorm1d cannot train on a batch of one sample of features (torch refuses its
batch statistics), so :func:`min_batch_for` gives it ``min_batch=2``: a trailing batch of one sample
is left out of each epoch. The rule is part of ``len(loader)``, which schedules, ``max_steps``
and resume count with, and every DDP rank holds the same number of samples, so all ranks drop
together.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate

from dlopt.data._types import Split
from dlopt.errors import ConfigError

__all__ = ["InMemoryLoader", "DataLoaderWrapper", "make_loader", "min_batch_for"]

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


def _epoch_seed(seed: int, epoch: int) -> int:
    # SeedSequence mixes (seed, epoch) so nearby seeds/epochs give unrelated permutations.
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch]).generate_state(1, np.uint64)[0] >> 1)


class _Resumable:
    """Epoch/position bookkeeping shared by both loaders."""

    def __init__(self, n: int, *, batch_size: int, shuffle: bool, seed: int, drop_last: bool,
                 rank: int, world_size: int, min_batch: int = 1) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: must be >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank={rank}, world_size={world_size}: need 0 <= rank < world_size")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.min_batch = min_batch  # a smaller trailing batch is left out
        self.epoch = 0
        self.position = 0  # batches already handed out in this epoch

    @property
    def samples_per_rank(self) -> int:
        # Drop the remainder so every rank sees the same count and slices stay disjoint.
        return self.n // self.world_size if self.world_size > 1 else self.n

    def __len__(self) -> int:
        full, rest = divmod(self.samples_per_rank, self.batch_size)
        return full + int(rest > 0 and not self.drop_last and rest >= self.min_batch)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """This rank's sample order for ``epoch`` (default: the current one)."""
        e = self.epoch if epoch is None else epoch
        if self.shuffle:
            g = torch.Generator().manual_seed(_epoch_seed(self.seed, e))
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        return order[: self.samples_per_rank * self.world_size][self.rank :: self.world_size]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (its permutation); the position resets only when the epoch changes,
        so calling it right after ``load_state_dict`` keeps the resume point."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.seed = int(state.get("seed", self.seed))

    def _batch_slices(self, order: torch.Tensor | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """(batch number, sample indices) from the current position to the epoch end; then
        the next epoch starts at position 0. ``order``: this epoch's indices, if already made."""
        idx = self.indices() if order is None else order
        for b in range(self.position, len(self)):
            # Count the batch as handed out before yielding: a checkpoint taken while the
            # caller trains on it resumes at the next one.
            self.position = b + 1
            yield b, idx[b * self.batch_size : (b + 1) * self.batch_size]
        self.epoch, self.position = self.epoch + 1, 0


class InMemoryLoader(_Resumable):
    """Seeded batches from two device-resident tensors."""

    def __init__(self, split: Split, *, batch_size: int, shuffle: bool = True, seed: int = 0,
                 device: str | torch.device = "cpu", drop_last: bool = False, rank: int = 0,
                 world_size: int = 1, min_batch: int = 1) -> None:
        super().__init__(len(split), batch_size=batch_size, shuffle=shuffle, seed=seed,
                         drop_last=drop_last, rank=rank, world_size=world_size, min_batch=min_batch)
        self.device = torch.device(device)
        # held uint8 pixels move as pixels (a quarter of the memory and of the copy) and each
        # gathered batch is divided on the device
        self.split = split.to(self.device)

    def first_inputs(self, n: int) -> torch.Tensor:
        """The inputs of the split's first ``n`` samples, in stored order (the position stays)."""
        return self.split.rows(slice(0, n))

    def __iter__(self) -> Iterator[Batch]:
        split = self.split
        if not self.shuffle and self.world_size == 1:
            # plain slices are views: no copy (and no host sync) for evaluation passes
            for b, idx in self._batch_slices():
                rows = slice(b * self.batch_size, b * self.batch_size + len(idx))
                yield split.rows(rows), split.y[rows]
            return
        # one host-to-device copy of the epoch's order, then pure device-side gathers
        for _, idx in self._batch_slices(self.indices().to(self.device)):
            yield split.rows(idx), split.y.index_select(0, idx)


class DataLoaderWrapper(_Resumable):
    """A ``torch.utils.data.DataLoader`` over a map-style ``Dataset``, same resume/shard rules."""

    def __init__(self, dataset: Dataset, *, batch_size: int, shuffle: bool = True, seed: int = 0,
                 device: str | torch.device = "cpu", drop_last: bool = False, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, min_batch: int = 1) -> None:
        super().__init__(len(dataset), batch_size=batch_size, shuffle=shuffle, seed=seed,  # type: ignore[arg-type]
                         drop_last=drop_last, rank=rank, world_size=world_size, min_batch=min_batch)
        self.dataset = dataset
        self.device = torch.device(device)
        self.num_workers = num_workers

    def first_inputs(self, n: int) -> torch.Tensor:
        """The inputs of the dataset's first ``n`` samples, in stored order (the position stays)."""
        rows = [self.dataset[i] for i in range(min(n, self.n))]
        return default_collate(rows)[0].to(self.device)

    def __iter__(self) -> Iterator[Batch]:
        # The batch list is computed up front so a resume skips batches without loading them.
        batches = [idx.tolist() for _, idx in self._plan()]
        # pinned host batches let the non_blocking copy below overlap with CUDA compute
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda")
        start = self.position
        for b, (x, y) in enumerate(loader, start=start):
            self.position = b + 1
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        self.epoch, self.position = self.epoch + 1, 0

    def _plan(self) -> list[tuple[int, torch.Tensor]]:
        saved = self.epoch, self.position
        plan = list(itertools.islice(self._batch_slices(), len(self)))
        self.epoch, self.position = saved
        return plan


def min_batch_for(module: nn.Module) -> int:
    """The fewest samples a training batch of ``module`` may hold: 2 when it has BatchNorm1d
    layers (one sample of features has no batch statistics), else 1. BatchNorm2d/3d take their
    statistics over the spatial positions too, so a batch of one image trains."""
    return 2 if any(isinstance(m, nn.BatchNorm1d) for m in module.modules()) else 1


def make_loader(data: Split | Dataset | DataLoader, *, batch_size: int, shuffle: bool, seed: int = 0,
                device: str | torch.device = "cpu", drop_last: bool = False, rank: int = 0,
                world_size: int = 1, loader: str = "auto",
                min_batch: int = 1) -> InMemoryLoader | DataLoaderWrapper:
    """Batches of ``data`` on ``device``; ``loader``: auto (in-memory for a Split), memory,
    or dataloader. ``min_batch`` (:func:`min_batch_for` the model): a smaller trailing batch
    is left out of every epoch. ``len(result)`` is the number of batches per epoch on this rank."""
    kw = dict(batch_size=batch_size, shuffle=shuffle, seed=seed, device=device,
              drop_last=drop_last, rank=rank, world_size=world_size, min_batch=min_batch)
    if loader not in ("auto", "memory", "dataloader"):
        raise ConfigError(f"data.loader={loader!r}: must be auto, memory or dataloader")
    made = _make(data, loader, kw)
    _check_min_batch(made)
    return made


def _make(data: Any, loader: str, kw: dict[str, Any]) -> InMemoryLoader | DataLoaderWrapper:
    if isinstance(data, Split):
        if loader == "dataloader":
            return DataLoaderWrapper(TensorDataset(data.x, data.y), **kw)
        return InMemoryLoader(data, **kw)
    if isinstance(data, DataLoader):  # reuse its dataset and workers; we own order and batching
        return DataLoaderWrapper(data.dataset, num_workers=data.num_workers, **kw)
    if isinstance(data, Dataset):
        if loader == "memory":
            raise ConfigError("data.loader=memory needs a Split of tensors; got a torch Dataset")
        return DataLoaderWrapper(data, **kw)
    raise ConfigError(f"make_loader needs a Split or a torch Dataset, got {type(data).__name__}")


def _check_min_batch(loader: _Resumable) -> None:
    """Refuse batches that are all too small; say once that a too-small trailing one is left out."""
    m, need = loader.samples_per_rank, loader.min_batch
    if need <= 1:
        return
    each = " per process" if loader.world_size > 1 else ""
    if loader.batch_size < need:
        raise ConfigError(f"train.batch_size={loader.batch_size}{each}: a model with BatchNorm1d needs at least "
                          f"{need} samples per training batch (batch statistics); allowed: batch_size >= {need}")
    if m < need:
        raise ConfigError(f"{m} training sample(s){each}: a model with BatchNorm1d needs at least {need} per "
                          f"training batch (batch statistics); allowed: {need} or more training samples")
    rest = m % loader.batch_size
    if 0 < rest < need and not loader.drop_last:
        log.warning("the last training batch of each epoch would hold %d of the %d samples, too few for "
                    "BatchNorm's batch statistics: it is left out (another sample each epoch when shuffled)",
                    rest, m)
