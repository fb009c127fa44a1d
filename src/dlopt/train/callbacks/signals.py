"""SIGTERM: finish the current step, checkpoint at the step boundary, exit with code 143.

``--resume`` then continues bitwise (the checkpoint is taken exactly where an uninterrupted
run would have gone on). Handlers are installed only in the main thread and restored at
``CLOSE``. A signal that arrives after the last step (while the final checkpoint is written)
cannot stop the run, which is finished; at ``CLOSE`` it is passed on to the handler that was
installed before, when that is a Python function (``dlopt tune``'s worker: it stops before the
next trial), instead of being lost.

With several processes a signal reaches the ranks at slightly different steps; a rank that
stopped alone would leave rank 0 (the one that writes) failing in the next collective without
its checkpoint. There ``shared`` is set and only :meth:`GracefulTermination.agree`'s verdict
(every rank's flag, reduced in the step's collective) stops, on all ranks at the same step.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from dlopt.errors import RunError

__all__ = ["RESUME_HINT", "GracefulTermination", "Terminated", "with_resume_hint"]

log = logging.getLogger(__name__)


#: how a stopped ``dlopt train`` continues; other verbs put their own way in its place
#: (``dlopt.cli._app.command(resume_hint=...)``: the text survives a stage's re-wrapping)
RESUME_HINT = "continue with --resume"


def with_resume_hint(message: str, hint: str | None) -> str:
    """``message`` with ``hint`` (a verb's own way on) in place of :data:`RESUME_HINT`."""
    return message if hint is None else message.replace(RESUME_HINT, hint)


class Terminated(RunError):
    """The run was stopped by a signal after saving a checkpoint."""

    exit_code = 143


class GracefulTermination:
    """Turns SIGTERM into "save at the next step boundary, then raise :class:`Terminated`"."""

    order = 1001  # after Checkpointing

    def __init__(self, checkpointing: Any, signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
        self.checkpointing = checkpointing
        self.signals = signals
        self.received: str | None = None
        self._signum: int | None = None
        self._raised = False
        self._previous: dict[int, Any] = {}
        self.shared = False  # several processes: stop only on the flag the ranks agreed on
        self._agreed = False

    def agree(self, any_rank_received: bool) -> None:
        """The ranks' verdict for this step (shared mode): stop at its end when any rank got a signal."""
        self._agreed = any_rank_received
        if any_rank_received and self.received is None:
            self.received = "SIGTERM (on another process)"

    def _due(self) -> bool:
        return self._agreed if self.shared else self.received is not None

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name
        self._signum = signum

    def on_fit_start(self, state: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)

    def on_batch_end(self, state: Any) -> None:
        if self._due() and not state.accumulating:
            self._stop(state)

    def on_epoch_end(self, state: Any) -> None:
        if self._due():  # Checkpointing (order 1000) has just saved this epoch
            self._stop(state, save=False)

    def _stop(self, state: Any, *, save: bool = True) -> None:
        if save and self.checkpointing._saved_step != state.step:
            self.checkpointing.save(state)
        where = (f"epoch {state.epoch + 1}, batch {state.batch_in_epoch}" if state.batch_in_epoch
                 else f"end of epoch {state.epoch}")
        self._raised = True
        # a DDP rank other than 0 saved nothing: its line (a plain torchrun shows it) must not say so
        saved = (f"checkpoint saved in {self.checkpointing.root / 'last'}" if self.checkpointing.write
                 else "rank 0 saves the checkpoint, not this process")
        raise Terminated(f"stopped by {self.received} at step {state.step} ({where}); {saved}; {RESUME_HINT}")

    def on_close(self, state: Any) -> None:
        for s, prev in self._previous.items():
            signal.signal(s, prev)
        late = self._signum is not None and not self._raised
        prev = self._previous.get(self._signum) if late else None
        self._previous.clear()
        if callable(prev):  # not SIG_DFL / SIG_IGN: the caller asked to hear about it
            prev(self._signum, None)
