"""Mixed precision: autocast around forward + loss, grad scaling for fp16.

``resolve_precision("auto", device)`` picks what was measured to help here: bf16 autocast on
CUDA with bf16 support (fp16 + grad scaling otherwise) and on CPUs with native bf16, AMX or
AVX-512 BF16 (ResNet-8 steps ~1.5x faster and LeNet-5 about even on AVX-512 BF16, see
STACK-NOTES; on an AMX Xeon LeNet-5 reached 99 % MNIST in 4.5 s against 4.9 s in fp32,
docs/speed.md); fp32 elsewhere, including AVX-512 CPUs without BF16, where oneDNN emulates
bf16 and LeNet-5 ran slower (650 vs 478 us/sample). Evaluation runs under the same autocast.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, ContextManager

import torch

from dlopt.errors import ConfigError

__all__ = ["Precision", "resolve_precision", "autocast_context"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16/fp16/fp32 for ``device``; other values pass through (checked)."""
    if precision != "auto":
        if precision == "fp16" and device.type == "mps":
            raise ConfigError("train.precision=fp16: not supported on mps; use fp32 or bf16")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and _cpu_has_bf16():
        return "bf16"
    return "fp32"


def _cpu_has_bf16() -> bool:
    """Native bf16 math: AMX tiles or AVX-512 BF16 (oneDNN's own check also passes plain
    AVX-512, where it emulates bf16)."""
    try:
        native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
        return bool(native and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_context(device: torch.device, precision: str) -> Callable[[], ContextManager[Any]]:
    """A zero-argument factory of the forward context for ``precision`` on ``device``."""
    if precision == "fp32":
        return contextlib.nullcontext
    return functools.partial(torch.autocast, device_type=device.type, dtype=_DTYPES[precision])


class Precision:
    """Hooks autocast (and, for fp16, a ``GradScaler``) into the loop.

    fp16: the loss is scaled before backward, gradients are unscaled first thing before the
    optimizer step (so clipping and the NaN guard see true values), and ``scaler.step`` skips
    steps whose gradients overflowed, lowering the scale.
    """

    order = -10  # unscale before clipping and the NaN/Inf guard
    state_key = "precision"

    def __init__(self, precision: str) -> None:
        self.precision = precision
        self.scaler: torch.amp.GradScaler | None = None

    def on_fit_start(self, state: Any) -> None:
        state.forward_context = autocast_context(state.device, self.precision)
        if self.precision == "fp16":
            self.scaler = torch.amp.GradScaler(state.device.type)
            state.extra["grad_scaler"] = self.scaler
            opt = state.optimizer
            state.optimizer_step = lambda: self.scaler.step(opt)

    def on_before_backward(self, state: Any) -> None:
        if self.scaler is not None:
            state.backward_loss = self.scaler.scale(state.backward_loss)

    def on_before_optimizer_step(self, state: Any) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(state.optimizer)

    def on_after_optimizer_step(self, state: Any) -> None:
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
