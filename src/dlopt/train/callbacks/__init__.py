"""Callbacks: objects with optional ``on_<event>(state)`` methods (see ``Event``).

``Checkpointing`` (last/best, atomic, resume), ``EarlyStopping`` (pure ``should_stop``),
``GracefulTermination`` (SIGTERM -> checkpoint -> exit 143), ``Progress`` (rich bar or
plain lines), ``MetricsLog`` (metrics.jsonl), ``TensorBoard`` (optional).
"""

from __future__ import annotations

from dlopt.train.callbacks.checkpoint import Checkpointing, restore
from dlopt.train.callbacks.early_stopping import EarlyStopping, should_stop
from dlopt.train.callbacks.metrics_log import MetricsLog
from dlopt.train.callbacks.progress import Progress, format_row
from dlopt.train.callbacks.signals import GracefulTermination, Terminated

__all__ = [
    "Checkpointing", "EarlyStopping", "GracefulTermination", "MetricsLog", "Progress",
    "Terminated", "format_row", "restore", "should_stop",
]
