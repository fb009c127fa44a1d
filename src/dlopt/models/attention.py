"""Reusable attention layers: multi-head self-attention, cross-attention, a transformer block.

All use ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on CPU/GPU) and
only reshape/transpose/linear around it, so they export to plain ONNX ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlopt.errors import ModelError
from dlopt.models.layers import make_activation, make_norm

__all__ = ["MultiHeadSelfAttention", "CrossAttention", "TransformerBlock", "check_heads"]


def check_heads(dim: int, heads: int, *, model: str = "attention") -> None:
    """The embedding width must split evenly into heads."""
    if dim % heads:
        raise ModelError(
            f"model {model!r}: width {dim} is not divisible by heads={heads}; "
            f"allowed: heads dividing {dim}"
        )


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    # (N, T, D) -> (N, heads, T, D / heads)
    n, t, d = x.shape
    return x.reshape(n, t, heads, d // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    # (N, heads, T, d) -> (N, T, heads * d)
    n, h, t, d = x.shape
    return x.transpose(1, 2).reshape(n, t, h * d)


class MultiHeadSelfAttention(nn.Module):
    """Self-attention over tokens ``(N, T, dim)`` with ``heads`` heads."""

    def __init__(self, dim: int, heads: int, *, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        check_heads(dim, heads)
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        p = self.dropout if self.training else 0.0
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v, dropout_p=p)))


class CrossAttention(nn.Module):
    """Queries ``x (N, Tq, dim)`` attend to ``context (N, Tk, context_dim)``."""

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        context_dim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_heads(dim, heads)
        self.heads = heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim, bias=bias)
        self.kv = nn.Linear(context_dim or dim, 2 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = _split_heads(self.q(x), self.heads)
        k, v = (_split_heads(t, self.heads) for t in self.kv(context).chunk(2, dim=-1))
        p = self.dropout if self.training else 0.0
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v, dropout_p=p)))


class TransformerBlock(nn.Module):
    """Pre-norm encoder block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        mlp_ratio: float = 2.0,
        activation: str = "gelu",
        norm: str = "layernorm",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = max(1, round(dim * mlp_ratio))
        self.norm1 = make_norm(norm, dim, "tokens")
        self.attn = MultiHeadSelfAttention(dim, heads, dropout=dropout)
        self.norm2 = make_norm(norm, dim, "tokens")
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), make_activation(activation), nn.Dropout(dropout),
            nn.Linear(hidden, dim), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
