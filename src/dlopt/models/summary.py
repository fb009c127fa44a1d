"""``summary(model, input_shape)``: parameters, forward MACs and size of any ``nn.Module``.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (MACs = FLOPs / 2) on one
sample, with two gaps filled analytically: CPU attention kernels
(``_scaled_dot_product_flash_attention_for_cpu`` is not in torch's flop table) and recurrent
layers (the oneDNN LSTM kernel is invisible to the counter, GRU/RNN are partly visible), so
RNN/GRU/LSTM layers are always counted from their sizes via forward hooks. The fused eval path
of ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` is switched off while counting
(its kernels are invisible to the counter too).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from dlopt.errors import ModelError

__all__ = ["ModelSummary", "summary", "count_params", "size_bytes", "rnn_macs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSummary:
    """Parameters, forward multiply-accumulates per sample, and bytes of parameters + buffers."""

    params: int
    macs: int
    size_bytes: int


def count_params(model: nn.Module) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def size_bytes(model: nn.Module) -> int:
    """Bytes held by parameters and buffers (what a state_dict stores)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _sdpa_flop(query_shape: Any, key_shape: Any, value_shape: Any, *_: Any, **__: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flop}

# multiply-accumulates per step per (input + hidden) unit: gates x hidden_size
_GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}


def rnn_macs(module: nn.RNNBase, seq_len: int, batch: int = 1) -> int:
    """Analytic forward MACs of an RNN/GRU/LSTM layer stack over ``seq_len`` steps.

    Counts the gate matrix products only, like the flop counter does for every other layer
    (elementwise ops are not counted anywhere).
    """
    gates = next((g for cls, g in _GATES.items() if isinstance(module, cls)), 1)
    dirs = 2 if module.bidirectional else 1
    out = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    total = 0
    for layer in range(module.num_layers):
        in_size = module.input_size if layer == 0 else out * dirs
        per_step = gates * module.hidden_size * (in_size + out)
        if out != module.hidden_size:  # LSTM projection
            per_step += module.hidden_size * out
        total += per_step * dirs
    return total * seq_len * batch


def _rnn_seq_len(module: nn.RNNBase, x: Any) -> tuple[int, int]:
    if isinstance(x, nn.utils.rnn.PackedSequence):
        return int(x.batch_sizes.numel()), int(x.batch_sizes[0])
    if x.dim() == 2:  # unbatched (L, H_in)
        return x.shape[0], 1
    return (x.shape[1], x.shape[0]) if module.batch_first else (x.shape[0], x.shape[1])


class _RnnPatch:
    """Replace whatever the counter saw inside recurrent layers by their analytic count."""

    def __init__(self, model: nn.Module, counter: FlopCounterMode) -> None:
        self.counter = counter
        self.extra_flops = 0
        self._before: dict[int, int] = {}
        self._handles = []
        for m in model.modules():
            if isinstance(m, nn.RNNBase):
                self._handles.append(m.register_forward_pre_hook(self._pre))
                self._handles.append(m.register_forward_hook(self._post))

    def _pre(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._before[id(module)] = self.counter.get_total_flops()

    def _post(self, module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        seen = self.counter.get_total_flops() - self._before.pop(id(module))
        seq_len, batch = _rnn_seq_len(module, args[0])  # type: ignore[arg-type]
        self.extra_flops += 2 * rnn_macs(module, seq_len, batch) - seen  # type: ignore[arg-type]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _example_input(model: nn.Module, input_shape: Iterable[int]) -> torch.Tensor:
    ref = next(iter(model.parameters()), None)
    if ref is None:
        ref = next(iter(model.buffers()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    return torch.zeros(1, *input_shape, device=device, dtype=dtype)


@contextlib.contextmanager
def _no_mha_fastpath() -> Iterator[None]:
    """Turn off the fused eval path of nn.MultiheadAttention / nn.TransformerEncoderLayer while
    counting: its kernels are not in torch's flop table (a user module with them counted 0 MACs
    for its attention), the plain path is the same maths in counted ops."""
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


def count_macs(model: nn.Module, input_shape: Iterable[int]) -> int:
    """Forward MACs of ``model`` for one sample of ``input_shape`` (eval mode, no grad)."""
    shape = tuple(input_shape)
    x = _example_input(model, shape)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS)
    patch = _RnnPatch(model, counter)
    try:
        with torch.no_grad(), _no_mha_fastpath(), counter:
            model(x)
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(
            f"summary: {type(model).__name__} failed on input_shape {shape} ({first})"
        ) from None
    finally:
        patch.remove()
        model.train(was_training)
    return (counter.get_total_flops() + patch.extra_flops) // 2


def summary(model: nn.Module, input_shape: Iterable[int]) -> ModelSummary:
    """Parameters, per-sample forward MACs and size in bytes of any ``nn.Module``.

    ``input_shape`` excludes the batch dim. The model runs once on zeros in eval mode on its
    own device; its training flag is restored afterwards.
    """
    macs = count_macs(model, input_shape)
    result = ModelSummary(params=count_params(model), macs=int(macs), size_bytes=size_bytes(model))
    log.debug("summary of %s: %s", type(model).__name__, result)
    return result
