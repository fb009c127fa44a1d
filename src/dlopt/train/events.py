"""Loop events and the hook table that dispatches them.

Techniques and callbacks are plain objects with optional methods named ``on_<event>``
(``on_fit_start(state)``, ``on_epoch_end(state)``, ...) and an optional integer ``order``
(lower runs first, default 0). :class:`Hooks` resolves them once into one tuple per event,
so an event nobody listens to costs one empty loop.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Callable, Iterable

__all__ = ["Event", "Hooks"]


class Event(str, Enum):
    """Where techniques and callbacks run. The loop (``dlopt.train.loop.run``), as pseudocode::

        fire(FIT_START)                               # move/compile model, restore, install handlers
        while epoch < epochs and not state.stop:
            fire(EPOCH_START)                         # unfreeze at epoch N, ...
            for x, y in loader:                       # resumes mid-epoch after --resume
                fire(BATCH_START)                     # channels_last, mixup/cutmix, augmentation
                with state.forward_context():         # autocast when precision is bf16/fp16
                    outputs = model(x)
                    fire(AFTER_FORWARD)               # == BEFORE_LOSS
                    loss = loss_fn(outputs, y)
                    fire(AFTER_LOSS)                  # L1 penalty, mixup's second target
                loss_sum += loss.detach()             # on device: no host sync
                backward_loss = loss
                fire(BEFORE_BACKWARD)                 # grad accumulation divides, fp16 scales
                backward_loss.backward()
                fire(AFTER_BACKWARD)                  # grad accumulation marks micro-steps
                if not state.accumulating:
                    fire(BEFORE_OPTIMIZER_STEP)       # unscale, clip, NaN/Inf guard (may skip)
                    if not state.skip_step: state.optimizer_step()
                    optimizer.zero_grad(set_to_none=True); step += 1
                    fire(AFTER_OPTIMIZER_STEP)        # lr schedule, EMA update
                fire(BATCH_END)                       # checkpoint every N steps, SIGTERM, progress
                if max_steps reached or state.stop: break
            train_loss = loss_sum / batches           # the one sync per epoch
            metrics = evaluate(eval_model, val)       # inference_mode, batched
            fire(EPOCH_END)                           # (after eval) log, plateau, early stop, checkpoint
        fire(FIT_END)                                 # final checkpoint, best weights
        fire(CLOSE)                                   # always, even after an error: release resources
    """

    FIT_START = "fit_start"
    EPOCH_START = "epoch_start"
    BATCH_START = "batch_start"
    AFTER_FORWARD = "after_forward"
    AFTER_LOSS = "after_loss"
    BEFORE_BACKWARD = "before_backward"
    AFTER_BACKWARD = "after_backward"
    BEFORE_OPTIMIZER_STEP = "before_optimizer_step"
    AFTER_OPTIMIZER_STEP = "after_optimizer_step"
    BATCH_END = "batch_end"
    EPOCH_END = "epoch_end"
    FIT_END = "fit_end"
    CLOSE = "close"

    @property
    def method(self) -> str:
        """The hook method name objects implement: ``on_<event>``."""
        return f"on_{self.value}"


BEFORE_LOSS = Event.AFTER_FORWARD

Hook = Callable[[Any], None]


class Hooks:
    """Per-event tuples of bound hook methods, resolved once from ``handlers``."""

    def __init__(self, handlers: Iterable[Any]) -> None:
        self.handlers = sorted(handlers, key=lambda h: getattr(h, "order", 0))
        self._table: dict[Event, tuple[Hook, ...]] = {
            ev: tuple(getattr(h, ev.method) for h in self.handlers if callable(getattr(h, ev.method, None)))
            for ev in Event
        }

    def __getitem__(self, event: Event) -> tuple[Hook, ...]:
        return self._table[event]

    def fire(self, event: Event, state: Any) -> None:
        """Call every hook of ``event`` with ``state``, in order."""
        for hook in self._table[event]:
            hook(state)
