"""Device selection, thread count, host memory policy, seeding and deterministic mode."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import random
from typing import Iterator

import numpy as np
import torch

from dlopt.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["select_device", "seed_everything", "environment", "retain_host_memory", "usable_cpus"]

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20  # glibc's maximum; larger blocks (data sets) still come from mmap
_host_memory_retained = False


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(name: str = "auto") -> torch.device:
    """``auto``: cuda, then mps, then cpu. Asking for an absent accelerator is a ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
    if name not in available:
        raise ConfigError(f"device={name!r}: unknown; allowed: auto, cpu, cuda, mps")
    if not available[name]:
        have = ", ".join(k for k, v in available.items() if v)
        raise ConfigError(f"device={name!r} is not available on this machine; available: {have}")
    return torch.device(name)


def retain_host_memory() -> bool:
    """Keep freed host memory in the process instead of handing it back to the kernel.

    By default glibc returns each freed multi-MB block (a CPU training step allocates and frees
    its activations every step) to the kernel, so the next step page-faults and zeroes them
    again: ~1,500 minor faults and ~25 % of a LeNet-5 batch-128 step on a 2-core CPU
    (docs/speed.md). This sets malloc's trim threshold out of reach and its mmap threshold to
    32 MiB, as tcmalloc or jemalloc would behave. Process-wide and not undone (glibc has no
    way back to its adaptive default); the cost is that the process keeps its peak heap.
    Returns whether it applied (False off glibc)."""
    global _host_memory_retained
    if _host_memory_retained:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _host_memory_retained = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
                                 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _host_memory_retained


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy's global RNG and python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _warn_oversubscribed(threads: int) -> None:
    """Oversubscribed threads spin against each other (100x slower seen). Under torchrun the
    processes of this machine (``LOCAL_WORLD_SIZE``) share its CPUs; its first one warns."""
    cpus, procs = usable_cpus(), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if threads * procs <= cpus or os.environ.get("LOCAL_RANK", "0") != "0":
        return
    asked, whose = (f"threads={threads}", "this process may use") if procs == 1 else \
        (f"threads={threads} x {procs} processes", "they share")
    log.warning("%s is more than the %d CPUs %s; torch's threads will contend (use --threads %d or fewer)",
                asked, cpus, whose, max(1, cpus // procs))


@contextlib.contextmanager
def environment(*, threads: int | None = None, deterministic: bool = False) -> Iterator[None]:
    """Set the intra-op thread count and deterministic algorithms for the duration of a fit,
    then restore the previous settings (they are process-global in torch)."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    if threads is not None:
        _warn_oversubscribed(threads)
        torch.set_num_threads(threads)
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; harmless on CPU
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
