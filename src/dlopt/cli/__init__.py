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
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    except Exception:  # noqa: BLE001 - what Python would print, then the same exit code
        traceback.print_exc()
        code = 1
    if code is not None and not isinstance(code, int):  # sys.exit("message"), as Python does
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    ctypes.CDLL(None).fflush(None)  # C-level stdio buffers (native libraries' printf)
    os._exit(code or 0)
