"""Progress: a rich progress bar on a terminal (loss, metric, samples/s, ETA), plain lines
(one per epoch) otherwise, e.g. in CI logs and pipes. An epoch line's samples/s is over its
training steps only (to its last batch's end); its seconds also hold validation and callbacks.

The running loss is read from the device at most every ``refresh`` seconds (the only sync
this callback adds), never per batch.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

__all__ = ["Progress", "format_row"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):  # an undefined metric (auc of one class): the test line's word for it
            return "n/a"
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def format_row(row: dict[str, Any], epochs: int | None = None, samples_per_s: float | None = None) -> str:
    """One plain line for a metrics row."""
    head = f"epoch {row['epoch']}" + (f"/{epochs}" if epochs else "")
    skip = {"epoch", "seconds"}
    parts = [head] + [f"{k} {_fmt(v)}" for k, v in row.items() if k not in skip]
    parts.append(f"{row.get('seconds', 0):.1f}s")
    if samples_per_s:
        parts.append(f"{samples_per_s:,.0f} samples/s")
    return "  ".join(parts)


class Progress:
    """Shows training progress on ``stream`` (default stdout)."""

    order = 200  # after early stopping so the epoch line can say why it stops

    def __init__(self, *, stream: IO[str] | None = None, refresh: float = 0.25,
                 metric: str | None = None, force_plain: bool = False) -> None:
        self.stream = stream
        self.refresh = refresh
        self.metric = metric
        self.force_plain = force_plain
        self._bar: Any = None
        self._task: Any = None
        self._last = 0.0
        self._epoch_samples = 0
        self._epoch_clock = 0.0
        self._steps_end = 0.0  # when the epoch's last training batch ended

    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stdout

    def on_fit_start(self, state: Any) -> None:
        out = self._out()
        if self.force_plain or not (hasattr(out, "isatty") and out.isatty()):
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(file=out), transient=False,
        )
        self._bar.start()

    def on_epoch_start(self, state: Any) -> None:
        self._epoch_samples = state.samples_seen
        self._epoch_clock = self._steps_end = time.perf_counter()
        if self._bar is not None:
            self._task = self._bar.add_task(f"epoch {state.epoch + 1}/{state.epochs}",
                                            total=state.steps_per_epoch,
                                            completed=state.batch_in_epoch, info="")

    def on_batch_end(self, state: Any) -> None:
        now = self._steps_end = time.perf_counter()
        if self._bar is None:
            return
        if now - self._last < self.refresh and state.batch_in_epoch < state.steps_per_epoch:
            return
        self._last = now
        loss = float(state.loss_sum) / max(1, state.loss_batches)  # one sync per refresh
        rate = (state.samples_seen - self._epoch_samples) / max(1e-9, now - self._epoch_clock)
        self._bar.update(self._task, completed=state.batch_in_epoch,
                         info=f"loss {loss:.4f}  {rate:,.0f} samples/s")

    def on_epoch_end(self, state: Any) -> None:
        row = state.history[-1]
        secs = self._steps_end - self._epoch_clock  # validation and callbacks train no samples
        rate = (state.samples_seen - self._epoch_samples) / max(1e-9, secs)
        if self._bar is not None:
            shown = {k: row[k] for k in ("train_loss", self.metric) if k and k in row}
            self._bar.update(self._task, completed=state.steps_per_epoch,
                             info="  ".join(f"{k} {_fmt(v)}" for k, v in shown.items()))
            self._bar.console.print(format_row(row, state.epochs, rate), highlight=False)
        else:
            self._out().write(format_row(row, state.epochs, rate) + "\n")
            self._out().flush()
        if state.stop and state.stop_reason:
            self._write(f"stopping: {state.stop_reason}")

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, highlight=False)
        else:
            self._out().write(line + "\n")

    def on_close(self, state: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
