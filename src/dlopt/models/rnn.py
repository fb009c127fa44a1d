"""``gru`` and ``lstm`` sequence classifiers.

Inputs become sequences of steps: ``(L,)`` is L steps of 1 feature, ``(C, L)`` is L steps of
C features, an image ``(C, H, W)`` is H steps (rows) of C*W features.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from dlopt.errors import ModelError
from dlopt.models._registry import positive_int, register_model
from dlopt.models.layers import drop_identity, init_weights, make_norm

__all__ = ["RecurrentClassifier", "gru", "lstm"]

# width counts units/channels here, not a multiplier
_WIDTH_UNITS = {"width": positive_int}

# input rank -> how a batch becomes (N, steps, features per step), and that feature count
_TO_STEPS: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    1: lambda x: x.unsqueeze(-1),
    2: lambda x: x.transpose(1, 2),
    3: lambda x: x.permute(0, 2, 1, 3).flatten(2),
}
_STEP_FEATURES: dict[int, Callable[[tuple[int, ...]], int]] = {
    1: lambda s: 1,
    2: lambda s: s[0],
    3: lambda s: s[0] * s[2],
}
_CELLS: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}


class RecurrentClassifier(nn.Module):
    """Recurrent stack over the steps; the last layer's final hidden state feeds the head."""

    def __init__(self, rnn: nn.RNNBase, rank: int, head: nn.Sequential) -> None:
        super().__init__()
        self.rank = rank
        self.rnn = rnn
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(_TO_STEPS[self.rank](x))
        if isinstance(h, tuple):  # LSTM returns (h_n, c_n)
            h = h[0]
        dirs = 2 if self.rnn.bidirectional else 1
        # h_n: (layers * dirs, N, H); keep the last layer, both directions side by side
        last = h[-dirs:].transpose(0, 1).flatten(1)
        return self.head(last)


def _recurrent(
    cell: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    width: int,
    depth: int,
    bidirectional: bool,
    norm: str,
    dropout: float,
    init: str,
) -> nn.Module:
    rank = len(input_shape)
    if rank not in _TO_STEPS:
        raise ModelError(
            f"model {cell!r} needs input_shape (L,), (C, L) or (C, H, W); got {input_shape}"
        )
    rnn = _CELLS[cell](
        _STEP_FEATURES[rank](input_shape), int(width), num_layers=depth, batch_first=True,
        dropout=dropout if depth > 1 else 0.0, bidirectional=bidirectional,
    )
    out = int(width) * (2 if bidirectional else 1)
    head = nn.Sequential(*drop_identity(
        make_norm(norm, out, "features"),
        nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        nn.Linear(out, num_classes),
    ))
    model = RecurrentClassifier(rnn, rank, head)
    init_weights(model, init)
    return model


def _register_recurrent(cell: str, description: str) -> Callable[..., nn.Module]:
    """Register one recurrent classifier under ``cell``: the same options for GRU and LSTM."""

    def build(
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        width: int = 64,
        depth: int = 1,
        bidirectional: bool = False,
        norm: str = "none",
        dropout: float = 0.0,
        init: str = "default",
    ) -> nn.Module:
        return _recurrent(cell, input_shape, num_classes, width=width, depth=depth,
                          bidirectional=bidirectional, norm=norm, dropout=dropout, init=init)

    build.__name__ = build.__qualname__ = cell
    build.__doc__ = (f"{cell.upper()} classifier: ``depth`` layers of ``width`` units, final hidden "
                     "state -> linear head.")
    return register_model(cell, checks=_WIDTH_UNITS, default_input=(40,), description=description)(build)


gru = _register_recurrent("gru", "GRU sequence classifier (signals, image rows)")
lstm = _register_recurrent("lstm", "LSTM sequence classifier (signals, image rows)")
