"""Device selection, thread count, seeding and deterministic mode."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Iterator

import numpy as np
import torch

from dlopt.errors import ConfigError

__all__ = ["select_device", "seed_everything", "environment"]


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


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy's global RNG and python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@contextlib.contextmanager
def environment(*, threads: int | None = None, deterministic: bool = False) -> Iterator[None]:
    """Set the intra-op thread count and deterministic algorithms for the duration of a fit,
    then restore the previous settings (they are process-global in torch)."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    if threads is not None:
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
