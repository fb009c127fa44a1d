"""Checkpointing: ``last`` every N steps and every epoch, ``best`` by a monitored metric, and
restoring everything on resume. File format and atomicity: :mod:`dlopt.train.checkpoint`.

What a checkpoint holds: model weights, optimizer, RNG states (torch, CUDA, numpy, python;
under DDP every rank's, see :class:`~dlopt.train.distributed.RankRandomness`), the loader
position, the loop counters and history, and the ``state_dict()`` of every handler that has
one (schedule, EMA, fp16 scaler, mixup RNG, early stopping, this callback's best score, ...).
Saving is only due at optimizer-step boundaries; deciding costs an integer compare per batch
(no sync unless a save is due).

``best`` breaks ties: when the monitored metric equals the best so far (an accuracy that
saturates at 1.0), the epoch with the lower ``val_loss`` wins (:func:`is_better`).

``max_steps`` ending a run inside an epoch: the loop closes that epoch early (evaluation,
history row, maybe ``best``), which an uninterrupted longer run would not do. So the state
before the close is saved first and linked as ``open`` (with ``open-best``, the ``best`` of
that moment); ``--resume`` starts there, so a raised budget continues the same epoch exactly
and an unchanged one closes it again with the same result.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from dlopt.train import checkpoint as io

__all__ = ["Checkpointing", "handler_key", "is_better", "restore"]

log = logging.getLogger(__name__)


def handler_key(handler: Any) -> str:
    """The name a handler's state is stored under."""
    return getattr(handler, "state_key", None) or type(handler).__name__


def _is_tensor_map(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _stateful(state: Any) -> list[Any]:
    return [h for h in state.handlers if callable(getattr(h, "state_dict", None))]


def checkpoint_files(state: Any, *, rank_rng: list[Any] | None = None) -> dict[str, bytes]:
    """Everything needed to resume ``state`` exactly, as file name -> bytes (``rank_rng``:
    every DDP rank's random state, stored beside rank 0's ``rng``)."""
    files = {io.WEIGHTS: io.weights_bytes(state.module)}
    handlers: dict[str, Any] = {}
    for h in _stateful(state):
        sd = h.state_dict()
        if _is_tensor_map(sd):  # weights-like state (EMA) goes to safetensors
            files[f"{handler_key(h)}.safetensors"] = io.weights_bytes(sd)
        else:
            handlers[handler_key(h)] = sd
    payload = {
        "optimizer": state.optimizer.state_dict(),
        "rng": io.rng_state(),
        "loader": state.loader.state_dict() if hasattr(state.loader, "state_dict") else None,
        "counters": state.counters(),
        "handlers": handlers,
    }
    if rank_rng is not None:  # one-process checkpoints stay as they were
        payload["rank_rng"] = rank_rng
    files[io.STATE] = io.state_bytes(payload)
    return files


def restore(state: Any, ckpt: io.Checkpoint) -> None:
    """Load a full checkpoint into ``state`` (model, optimizer, handlers, loader, counters, RNG)."""
    try:
        state.module.load_state_dict(ckpt.weights)
    except RuntimeError as exc:
        raise io.CheckpointError(
            f"checkpoint {ckpt.path} does not fit the model: {str(exc).splitlines()[1].strip()}"
        ) from None
    payload = ckpt.state
    try:
        state.optimizer.load_state_dict(payload["optimizer"])
        for h in _stateful(state):
            key = handler_key(h)
            if key in ckpt.tensors:
                h.load_state_dict(ckpt.tensors[key])
            elif key in payload["handlers"]:
                h.load_state_dict(payload["handlers"][key])
            elif callable(getattr(h, "fallback_state", None)):  # what a checkpoint without it implies
                h.load_state_dict(h.fallback_state())
            else:
                log.warning("checkpoint %s has no state for %s; it starts fresh", ckpt.path, key)
        if payload.get("loader") is not None and hasattr(state.loader, "load_state_dict"):
            state.loader.load_state_dict(payload["loader"])
        state.load_counters(payload["counters"])
        io.set_rng_state(payload["rng"])
    except (KeyError, ValueError, TypeError) as exc:
        raise io.CheckpointError(
            f"checkpoint {ckpt.path / io.STATE} does not match this run ({type(exc).__name__}: {exc}); "
            "resume with the same config"
        ) from None


def is_better(value: float, best: float | None, *, mode: str, loss: float | None = None,
              best_loss: float | None = None) -> bool:
    """Whether an epoch scoring ``value`` beats ``best`` (``mode``: max or min); on a tie the
    lower validation ``loss`` wins when both epochs have one (the earlier epoch otherwise)."""
    if best is None:
        return True
    if value != best:
        return value > best if mode == "max" else value < best
    return loss is not None and best_loss is not None and loss < best_loss


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


class Checkpointing:
    """Writes ``checkpoints/last`` (every ``every_steps`` and every epoch end) and
    ``checkpoints/best`` (when ``monitor`` improves); restores ``resume_from`` at fit start."""

    order = 1000  # last: after every other handler updated (and restored) its state
    state_key = "checkpointing"

    def __init__(self, root: str | Path, *, every_steps: int | None = None, keep_best: bool = True,
                 monitor: str | None = None, mode: str = "max", meta: Mapping[str, Any] | None = None,
                 resume_from: str | Path | None = None, write: bool = True) -> None:
        self.root = Path(root)
        self.write = write  # False on DDP ranks other than 0: they track, rank 0 writes
        self.every_steps = every_steps
        self.keep_best = keep_best
        self.monitor, self.mode = monitor, mode
        self.meta = dict(meta or {})
        self.resume_from = resume_from
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_loss: float | None = None  # the best epoch's val_loss, to break ties
        self._saved_step = -1
        self._saved_epoch = -1

    def on_fit_start(self, state: Any) -> None:
        if self.resume_from is not None:
            reopen = self._reopens()
            ckpt = io.read_checkpoint(self.root / io.OPEN if reopen else self.resume_from, map_location=state.device)
            restore(state, ckpt)
            ranks = state.extra.get("rank_random")
            if ranks is not None:  # restore() set rank 0's random state on every rank
                ranks.restore(ckpt.state.get("rank_rng"), step=state.step)
            if reopen and self.write:  # the early close never happened for this run: nor did its ``best``
                self._copy_link(io.OPEN_BEST, "best")
            log.info("resumed from %s at epoch %d, step %d", ckpt.path, state.epoch, state.step)

    def _reopens(self) -> bool:
        """Whether ``open`` holds the state ``last`` was closed from (resume there)."""
        open_step = io.link_step(self.root, io.OPEN)
        return (Path(self.resume_from) == self.root / "last" and open_step is not None
                and open_step >= (io.link_step(self.root, "last") or 0))

    def on_batch_end(self, state: Any) -> None:
        if state.accumulating:
            return
        every = self.every_steps
        cut = state.done and state.batch_in_epoch < state.steps_per_epoch  # max_steps ends mid-epoch
        if ((every and state.step % every == 0) or cut) and state.step != self._saved_step:
            self.save(state, open_epoch=cut)

    def on_epoch_end(self, state: Any) -> None:
        self.save(state, best=self._update_best(state))

    def _update_best(self, state: Any) -> bool:
        if not self.keep_best or self.monitor is None:
            return False
        value = _finite(state.metrics.get(self.monitor))
        if value is None:
            return False
        loss = _finite(state.metrics.get("val_loss")) if self.monitor != "val_loss" else None
        better = is_better(value, self.best, mode=self.mode, loss=loss, best_loss=self.best_loss)
        if better:
            self.best, self.best_epoch, self.best_loss = value, state.epoch, loss
        return better

    def save(self, state: Any, *, best: bool = False, open_epoch: bool = False) -> Path:
        """Write a checkpoint of ``state`` now and point ``last`` (and ``best``) at it;
        ``open_epoch``: also as ``open`` (see the module docstring)."""
        guard = state.extra.get("nonfinite_guard")
        if guard is not None:
            guard.flush()  # a pending bad step must raise before anything is written
        io.assert_finite(state.module, step=state.step)
        ranks = state.extra.get("rank_random")
        rank_rng = ranks.gather() if ranks is not None else None  # a collective: all ranks save together
        if not self.write:
            self._saved_step, self._saved_epoch = state.step, state.epoch
            return self.root / "last"
        path = io.write_checkpoint(self.root, checkpoint_files(state, rank_rng=rank_rng), step=state.step,
                                   epoch=state.epoch, meta=self.meta)
        if open_epoch:
            self._point_open(path)
        # ``best`` before ``last``: ``last`` holds this callback's best score, so a kill between
        # the two swaps must leave ``last`` behind (the resumed run redoes this save), never a
        # ``last`` that names this epoch best while ``best`` still points at an older one.
        if best:
            io.point(self.root, "best", path)
        io.point(self.root, "last", path)
        # the run went past ``open``: drop it only now, as an ``open`` older than ``last`` is ignored
        if io.link_step(self.root, io.OPEN) not in (None, state.step):
            for link in (io.OPEN, io.OPEN_BEST):
                (self.root / link).unlink(missing_ok=True)
        io.cleanup(self.root)
        self._saved_step, self._saved_epoch = state.step, state.epoch
        return path

    def _point_open(self, path: Path) -> None:
        self._copy_link("best", io.OPEN_BEST)  # first: ``open`` is only followed together with it
        io.point(self.root, io.OPEN, path)

    def _copy_link(self, src: str, dst: str) -> None:
        """Point ``dst`` where ``src`` points; no ``src``: no ``dst``."""
        if (self.root / src).is_symlink():
            io.point(self.root, dst, self.root / os.readlink(self.root / src))
        else:
            (self.root / dst).unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_loss": self.best_loss}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.best_loss = state.get("best_loss")  # absent in older checkpoints: ties keep the earlier epoch
