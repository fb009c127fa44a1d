"""optuna's Python warnings during a study, in dlopt's words: each one a single log line, once.

optuna warns through :mod:`warnings` (deprecated options, experimental features, a sampler
ignoring something), which prints a file path, a line number and a source line per call,
several times per study. Inside :func:`optuna_warnings_as_log` such a warning becomes one
``log.warning`` line; the ones dlopt already handles or says itself are dropped. Warnings of
other libraries (torch during training) are shown as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator

import optuna

log = logging.getLogger(__name__)

__all__ = ["optuna_warnings_as_log", "HANDLED"]

#: optuna warnings dlopt deals with itself (message starts)
HANDLED = (
    # said once at the start of the study, with what dlopt still does with constraints
    "Constraints have been set, but CmaEsSampler will not use them",
)

# on Python >= 3.12 optuna's warnings skip optuna's own frames and point at its caller, which
# during a study is dlopt's tune code
_SOURCES = tuple(str(Path(p).resolve().parent) + os.sep for p in (optuna.__file__, __file__))


@contextlib.contextmanager
def optuna_warnings_as_log() -> Iterator[None]:
    """Route optuna's warnings to one log line each (first occurrence only) while inside.
    The warnings machinery is process-wide: only the main thread switches it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: set[str] = set()
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message: Any, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
            if not _from_optuna(category, filename):
                shown(message, category, filename, lineno, file, line)
                return
            text = (str(message).strip().splitlines() or [category.__name__])[0]
            if text.startswith(HANDLED) or text in seen:
                return
            seen.add(text)
            log.warning("optuna: %s", text)

        warnings.showwarning = show
        yield


def _from_optuna(category: type[Warning], filename: str) -> bool:
    if issubclass(category, optuna.exceptions.ExperimentalWarning):
        return True
    try:
        path = str(Path(filename).resolve())
    except (OSError, ValueError):
        return False
    return path.startswith(_SOURCES)
