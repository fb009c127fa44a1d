"""An exclusive lock on a file, held by a process while it owns something (a pipeline run
directory, a SQLite study's one worker): ``flock`` is dropped by the kernel when the holder
exits, crashes included, so a lock is never left stale."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Callable

from dlopt.errors import ConfigError

__all__ = ["hold_exclusive"]


def hold_exclusive(path: str | Path, message: str) -> Callable[[], None]:
    """Take a non-blocking exclusive lock on ``path`` (created if missing) and return its
    release; raise :class:`ConfigError` ``message`` when another holder has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(message) from None
    return lambda: os.close(fd)  # closing releases the flock
