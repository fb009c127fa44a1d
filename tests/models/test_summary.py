"""summary(): parameters, MACs (hand counts) and bytes, on zoo and user modules."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlopt.errors import ModelError
from dlopt.models import ModelSummary, create_model, summary
from dlopt.models.attention import MultiHeadSelfAttention


def test_lenet5_hand_count():
    model = create_model("lenet5", input_shape=(1, 28, 28), num_classes=10)
    macs = (
        6 * 28 * 28 * (1 * 3 * 3)      # conv1 6@3x3 pad 1 on 28x28
        + 16 * 10 * 10 * (6 * 5 * 5)   # conv2 16@5x5 on 14x14 -> 10x10
        + 400 * 120 + 120 * 84 + 84 * 10
    )
    params = (6 * 9 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert summary(model, (1, 28, 28)) == ModelSummary(params=params, macs=macs,
                                                       size_bytes=4 * params)
    assert (macs, params) == (341_256, 61_610)


def test_summary_is_frozen():
    stats = summary(nn.Linear(3, 2), (3,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.macs = 0  # type: ignore[misc]


def test_size_counts_buffers():
    model = create_model("convnet", input_shape=(1, 28, 28), num_classes=10)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 3  # two conv blocks and the hidden fc layer
    stats = summary(model, (1, 28, 28))
    # running mean + var (float32) and num_batches_tracked (int64) per BatchNorm
    extra = sum(2 * 4 * bn.num_features + 8 for bn in bns)
    assert stats.size_bytes == 4 * stats.params + extra


@pytest.mark.parametrize(("name", "gates"), [("gru", 3), ("lstm", 4)])
def test_recurrent_macs(name, gates):
    model = create_model(name, input_shape=(40,), num_classes=10)  # 40 steps of 1 feature
    expected = 40 * gates * 64 * (1 + 64) + 64 * 10
    assert summary(model, (40,)).macs == expected > 0


@pytest.mark.parametrize(("cls", "gates"), [(nn.RNN, 1), (nn.GRU, 3), (nn.LSTM, 4)])
def test_user_recurrent_stack_bidirectional(cls, gates):
    rnn = cls(8, 16, num_layers=2, bidirectional=True, batch_first=False)
    seq_len = 12
    per_step = gates * 16 * (8 + 16) + gates * 16 * (32 + 16)  # layer 1, layer 2 (input 2H)
    stats = summary(_SeqWrapper(rnn), (seq_len, 8))
    assert stats.macs == 2 * per_step * seq_len  # 2 directions
    assert stats.params == sum(p.numel() for p in rnn.parameters())


class _SeqWrapper(nn.Module):
    """A user module: batch-first input through a seq-first recurrent layer."""

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x.transpose(0, 1))[0]


class _UserNet(nn.Module):
    """Not from the zoo: conv, a raw matmul with its own parameter, a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.proj = nn.Parameter(torch.randn(4 * 8 * 8, 5))
        self.fc = nn.Linear(5, 2)
        self.register_buffer("scale", torch.ones(1, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x)).flatten(1) @ self.proj
        return self.fc(h) * self.scale.float()


def test_user_module():
    model = _UserNet().train()
    stats = summary(model, (3, 8, 8))
    assert stats.params == 4 * 3 * 9 + 256 * 5 + 5 * 2 + 2
    assert stats.macs == 4 * 8 * 8 * 27 + 256 * 5 + 5 * 2
    assert stats.size_bytes == 4 * stats.params + 8  # float64 buffer
    assert model.training  # training flag restored


def test_attention_is_counted():
    tokens, dim = 10, 16
    attn = MultiHeadSelfAttention(dim, heads=4)
    linear = tokens * dim * 3 * dim + tokens * dim * dim
    scores = 2 * tokens * tokens * dim  # q k^T and attn v over all heads
    assert summary(attn, (tokens, dim)).macs == linear + scores


class _TorchAttention(nn.Module):
    """A user module built from torch's own attention layers."""

    def __init__(self, dim: int, ffn: int) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, 4, batch_first=True)
        self.layer = nn.TransformerEncoderLayer(dim, 4, ffn, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(self.mha(x, x, x, need_weights=False)[0])


def test_torch_attention_layers_are_counted():
    """Their fused eval kernels are not in torch's flop table: 0 MACs were counted for both."""
    tokens, dim, ffn = 10, 16, 32
    attn = tokens * dim * 3 * dim + tokens * dim * dim + 2 * tokens * tokens * dim
    assert summary(_TorchAttention(dim, ffn), (tokens, dim)).macs == 2 * attn + 2 * tokens * dim * ffn
    assert torch.backends.mha.get_fastpath_enabled()  # the fast path is back on afterwards


def test_module_without_parameters():
    assert summary(nn.ReLU(), (3, 4)) == ModelSummary(params=0, macs=0, size_bytes=0)


def test_wrong_input_shape_is_a_model_error():
    model = create_model("mlp", input_shape=(10,), num_classes=2)
    with pytest.raises(ModelError) as exc:
        summary(model, (11,))
    assert "\n" not in str(exc.value) and "(11,)" in str(exc.value)
