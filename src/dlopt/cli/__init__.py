"""Command line: ``dlopt <verb>``. Each room's verbs live in their own module here."""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import pkgutil
import sys
import traceback
from typing import Any, NoReturn

from dlopt.cli._app import app

__all__ = ["app", "main"]

# Every public module in this package registers its verbs on ``app`` when imported.
for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")


def main() -> None:
    """Console-script entry point."""
    if os.environ.get("WORLD_SIZE", "1") == "1":
        app()
        return
    _torchrun_worker()


def _torchrun_worker() -> NoReturn:
    """Run the command in a torchrun worker, then leave without finalizing the interpreter.

    torch's gloo threads outlive ``destroy_process_group`` once DDP has used the group, and
    one that drops its last work (holding Python-owned tensors) while the interpreter
    finalizes aborts the process ("terminate called without an active exception", exit -6)
    after a finished run, which fails the whole group (4 of 96 elastic-restart runs on a
    loaded 2-core machine; pytorch/pytorch#179291). Every file is written and closed by
    then, so the worker flushes its output and exits with the command's code.
    """
    code: Any = 0
    held = _HeldErrorLine(sys.stderr)
    sys.stderr = held
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:  # noqa: BLE001 - what Python would print, then the same exit code
        traceback.print_exc()
        held.line, code = f"{type(exc).__name__}: {exc}", 1
    finally:
        sys.stderr = held.stream
    if code is not None and not isinstance(code, int):  # sys.exit("message"), as Python does
        held.line, code = str(code), 1
    if held.line is not None and code:
        _report(held.line, code)
    elif held.line is not None:  # not a failure: nothing for the launcher
        print(f"error: {held.line}", file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    ctypes.CDLL(None).fflush(None)  # C-level stdio buffers (native libraries' printf)
    os._exit(code or 0)


class _HeldErrorLine:
    """A torchrun worker's stderr: everything passes but the command's one-line error
    ("error: ..."), kept for :func:`_report` (one line for the group, not one per process)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.line = stream, None

    def write(self, text: Any) -> int:
        if isinstance(text, str) and text.startswith("error: "):
            self.line = text[len("error: "):].rstrip("\n")
            return len(text)
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _report(line: str, code: int) -> None:
    """Hand the error line to torchrun; print it only where this process is the group's voice."""
    from dlopt.train.distributed import record_failure

    if record_failure(line, code):
        print(f"error: {line}", file=sys.stderr)
