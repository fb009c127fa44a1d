"""The training loop: runs batches and fires events, nothing else.

Every technique (precision, clipping, EMA, mixup, ...) and callback (checkpoints, early
stopping, progress, ...) is a handler hooked to the events documented on
:class:`dlopt.train.events.Event`. The hot path keeps the loss sum on the device (one host
sync per epoch), calls ``zero_grad(set_to_none=True)``, and walks pre-resolved hook tuples.
"""

from __future__ import annotations

import logging

import torch

from dlopt.train.events import Event, Hooks
from dlopt.train.state import State

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(state: State, hooks: Hooks) -> State:
    """Fit: epochs of :func:`train_epoch` + evaluation until ``epochs``, ``max_steps`` or a
    stop request. ``CLOSE`` fires even when a handler raises; the exception propagates."""
    try:
        state.start_clock()
        hooks.fire(Event.FIT_START, state)
        while state.epoch < state.epochs and not state.stop and not state.done:
            train_epoch(state, hooks)
            end_epoch(state, hooks)
        if state.batch_in_epoch:
            # resumed inside an epoch the budget already ends: close it, as the first run did
            hooks.fire(Event.EPOCH_START, state)
            end_epoch(state, hooks)
        hooks.fire(Event.FIT_END, state)
    finally:
        hooks.fire(Event.CLOSE, state)
    return state


def train_epoch(state: State, hooks: Hooks) -> None:
    """One pass over the training loader (or the rest of it, after a resume)."""
    if state.batch_in_epoch == 0:
        state.epoch_t0 = state.elapsed()
        state.loss_sum = torch.zeros((), device=state.device)
        state.loss_batches = 0
        state.extra["epoch_lr"] = state.lr
    elif state.loss_sum is None:  # defensive: a resume always restores it
        state.loss_sum = torch.zeros((), device=state.device)
    state.module.train()  # before EPOCH_START: a handler may keep some layers in eval mode (frozen BatchNorm)
    hooks.fire(Event.EPOCH_START, state)
    if hasattr(state.loader, "set_epoch"):
        state.loader.set_epoch(state.epoch)
    # Pre-resolved hook tuples: an event with no handler costs one empty loop.
    batch_start, after_forward, after_loss = hooks[Event.BATCH_START], hooks[Event.AFTER_FORWARD], hooks[Event.AFTER_LOSS]
    before_backward, after_backward = hooks[Event.BEFORE_BACKWARD], hooks[Event.AFTER_BACKWARD]
    batch_end = hooks[Event.BATCH_END]
    loss_fn, loss_sum = state.loss_fn, state.loss_sum
    for x, y in state.loader:
        state.x, state.y = x, y
        state.batch_in_epoch += 1
        state.samples_seen += y.shape[0]
        for h in batch_start:
            h(state)
        with state.forward_context():
            state.outputs = state.model(state.x)
            for h in after_forward:
                h(state)
            state.loss = loss_fn(state.outputs, state.y)
            for h in after_loss:
                h(state)
        loss_sum.add_(state.loss.detach())
        state.loss_batches += 1
        state.backward_loss = state.loss
        for h in before_backward:
            h(state)
        state.backward_loss.backward()
        for h in after_backward:
            h(state)
        if not state.accumulating:
            optimizer_step(state, hooks)
        for h in batch_end:
            h(state)
        if state.stop or state.done:
            break


def optimizer_step(state: State, hooks: Hooks) -> None:
    """Step (unless a handler set ``skip_step``), clear the gradients, count the step."""
    state.skip_step = False
    for h in hooks[Event.BEFORE_OPTIMIZER_STEP]:
        h(state)
    if not state.skip_step:
        state.optimizer_step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    for h in hooks[Event.AFTER_OPTIMIZER_STEP]:
        h(state)


def end_epoch(state: State, hooks: Hooks) -> None:
    """Sync the epoch's loss once, evaluate, record the history row, fire ``EPOCH_END``."""
    state.train_loss = float(state.loss_sum) / max(1, state.loss_batches) if state.loss_batches else float("nan")
    state.metrics = state.evaluator(state) if state.evaluator is not None else {}
    state.epoch += 1
    state.batch_in_epoch = 0
    now = state.elapsed()
    state.history.append({
        "epoch": state.epoch, "step": state.step, "train_loss": state.train_loss,
        **state.metrics, "lr": state.extra.get("epoch_lr", state.lr),
        "seconds": round(now - state.epoch_t0, 4),
    })
    log.info("epoch %d: %s", state.epoch, state.history[-1])
    hooks.fire(Event.EPOCH_END, state)
