"""``vit``: a tiny Vision Transformer (patch embedding + self-attention blocks)."""

from __future__ import annotations

import math

import torch
from torch import nn

from dlopt.errors import ModelError
from dlopt.models._registry import positive_int, register_model
from dlopt.models.attention import TransformerBlock, check_heads
from dlopt.models.layers import image_input, init_weights, make_norm

__all__ = ["VisionTransformer", "vit", "auto_patch_size"]

# width counts units/channels here, not a multiplier
_WIDTH_UNITS = {"width": positive_int}


def auto_patch_size(h: int, w: int) -> int:
    """Largest patch dividing H and W that leaves at least 4 patches per side (4x4 grid on
    28x28 and 32x32): few tokens keep attention cheap on small images."""
    limit = max(1, min(h, w) // 4)
    return max(p for p in range(1, limit + 1) if h % p == 0 and w % p == 0)


class VisionTransformer(nn.Module):
    """Patch embedding + learned positions, pre-norm blocks, final norm, mean-pool, head."""

    def __init__(
        self,
        prefix: list[nn.Module],
        in_ch: int,
        grid: tuple[int, int],
        patch: int,
        num_classes: int,
        *,
        width: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        activation: str,
        norm: str,
        dropout: float,
    ) -> None:
        super().__init__()
        self.prefix = nn.Sequential(*prefix)
        self.patch_embed = nn.Conv2d(in_ch, width, patch, stride=patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1], width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*(
            TransformerBlock(width, heads, mlp_ratio=mlp_ratio, activation=activation,
                             norm=norm, dropout=dropout)
            for _ in range(depth)
        ))
        self.norm = make_norm(norm, width, "tokens")
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(self.prefix(x)).flatten(2).transpose(1, 2) + self.pos_embed
        tokens = self.norm(self.blocks(tokens))
        return self.head(self.drop(tokens.mean(dim=1)))


@register_model(
    "vit",
    checks=_WIDTH_UNITS,
    description="Tiny Vision Transformer: patch embedding + self-attention",
)
def vit(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    patch_size: int | None = None,
    width: int = 64,
    depth: int = 4,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    activation: str = "gelu",
    norm: str = "layernorm",
    dropout: float = 0.0,
    init: str = "xavier_uniform",
) -> nn.Module:
    """Tiny ViT: patch embedding, ``depth`` multi-head self-attention blocks, mean-pool head.

    ``width`` is the embedding size (divisible by ``heads``). ``patch_size`` must divide H and
    W; None picks the largest one leaving a grid of at least 4x4 patches (7 for 28x28).
    """
    prefix, c, h, w = image_input(input_shape, model="vit")
    width = int(width)
    check_heads(width, heads, model="vit")
    patch = auto_patch_size(h, w) if patch_size is None else patch_size
    if h % patch or w % patch:
        raise ModelError(
            f"model 'vit' option 'patch_size' = {patch} does not divide input {h}x{w}; "
            f"allowed: a common divisor of {h} and {w} (gcd {math.gcd(h, w)})"
        )
    model = VisionTransformer(
        prefix, c, (h // patch, w // patch), patch, num_classes,
        width=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio,
        activation=activation, norm=norm, dropout=dropout,
    )
    init_weights(model, init)
    return model
