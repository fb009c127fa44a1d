"""Residual CNNs: ``resnet`` (CIFAR-style, depth 6n+2) and ``msresnet`` (multi-scale branches).

Width overrides follow one rule for both: ``channels`` lists the output channels of every
3x3 conv in forward order (stem, then conv1 and conv2 of each block); 1x1 shortcut convs are
not listed because they match their block's output. A block gets a projection shortcut
exactly when its stride is not 1 or its input and output widths differ, so a model rebuilt
from a pruned model's ``channels`` has the same layers and loads its state_dict.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import nn

from dlopt.errors import ModelError
from dlopt.models._registry import one_of, register_model
from dlopt.models.attention import CrossAttention, check_heads
from dlopt.models.layers import (
    check_widths,
    conv_block,
    drop_identity,
    image_input,
    init_weights,
    make_activation,
    make_norm,
    make_pool,
    scaled,
)

__all__ = ["BasicBlock", "ResNet", "MultiScaleResNet", "resnet", "msresnet"]


class BasicBlock(nn.Module):
    """conv3x3-norm-act-conv3x3-norm plus shortcut, then activation."""

    def __init__(
        self, in_ch: int, mid: int, out: int, *, stride: int, activation: str, norm: str
    ) -> None:
        super().__init__()
        conv2 = nn.Conv2d(mid, out, 3, padding=1, bias=norm == "none")
        self.body = nn.Sequential(
            *conv_block(in_ch, mid, dims=2, kernel=3, stride=stride,
                        activation=activation, norm=norm),
            *drop_identity(conv2, make_norm(norm, out, "conv2d")),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out:
            self.shortcut = nn.Sequential(*drop_identity(
                nn.Conv2d(in_ch, out, 1, stride=stride, bias=norm == "none"),
                make_norm(norm, out, "conv2d"),
            ))
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))

    def widths(self) -> list[int]:
        """Output channels of the two 3x3 convs."""
        return [m.out_channels for m in self.body if isinstance(m, nn.Conv2d)]


def _blocks(model: nn.Module) -> Iterator[BasicBlock]:
    return (m for m in model.modules() if isinstance(m, BasicBlock))


def _stem_width(stem: nn.Sequential) -> int:
    return next(m.out_channels for m in stem if isinstance(m, nn.Conv2d))


def _arch(model: nn.Module, stem: nn.Sequential) -> dict[str, Any]:
    return {"channels": [_stem_width(stem), *(w for b in _blocks(model) for w in b.widths())]}


def _block_plan(channels: list[int]) -> Iterator[tuple[int, int]]:
    """(mid, out) per block from a flat slice of ``channels`` (two per block)."""
    for i in range(0, len(channels), 2):
        yield channels[i], channels[i + 1]


class ResNet(nn.Module):
    """Stem, 3 stages of BasicBlocks (the 2nd and 3rd start with stride 2), GAP, linear head."""

    def __init__(self, stem: nn.Sequential, stages: nn.Sequential, head: nn.Sequential) -> None:
        super().__init__()
        self.stem, self.stages, self.head = stem, stages, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))

    def arch_options(self) -> dict[str, Any]:
        """Current conv widths (``channels``), for rebuilding a pruned model."""
        return _arch(self, self.stem)


def _stem(
    prefix: list[nn.Module], c_in: int, width: int, activation: str, norm: str
) -> nn.Sequential:
    return nn.Sequential(*prefix, *conv_block(c_in, width, dims=2, kernel=3,
                                              activation=activation, norm=norm))


def _head(features: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(*drop_identity(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        nn.Linear(features, num_classes),
    ))


def _resnet_depth(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= 8 and (v - 2) % 6 == 0
    return None if ok else "6n+2 with n >= 1 (8, 14, 20, 26, 32, ...)"


@register_model(
    "resnet",
    description="CIFAR-style ResNet, depth 6n+2, stages 16/32/64 x width",
    checks={"depth": _resnet_depth},
)
def resnet(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    depth: int = 8,
    width: float = 1.0,
    channels: list[int] | None = None,
    activation: str = "relu",
    norm: str = "batchnorm",
    dropout: float = 0.0,
    init: str = "kaiming",
) -> nn.Module:
    """CIFAR-style ResNet (depth 6n+2: 8, 14, 20, ...) with stages of 16, 32, 64 x width.

    ``n = (depth - 2) / 6`` BasicBlocks per stage (conv-norm-act), global average pool,
    dropout, linear head. ``channels`` overrides every 3x3 conv width (1 + 6n values: stem,
    then conv1, conv2 of each block); a pruned ResNet stores it in arch.json
    (:meth:`ResNet.arch_options`) and is rebuilt from it before loading its weights.
    """
    n = (depth - 2) // 6
    check_widths("resnet", "channels", channels, 1 + 6 * n)
    prefix, c_in, _, _ = image_input(input_shape, model="resnet")
    if channels is None:
        stage_w = [scaled(b, width) for b in (16, 32, 64)]
        channels = [stage_w[0], *(w for s in stage_w for _ in range(n) for w in (s, s))]
    stem = _stem(prefix, c_in, channels[0], activation, norm)
    stages: list[nn.Module] = []
    prev = channels[0]
    for s in range(3):
        blocks = []
        for b, (mid, out) in enumerate(_block_plan(channels[1 + 2 * n * s: 1 + 2 * n * (s + 1)])):
            stride = 2 if s > 0 and b == 0 else 1
            blocks.append(BasicBlock(prev, mid, out, stride=stride,
                                     activation=activation, norm=norm))
            prev = out
        stages.append(nn.Sequential(*blocks))
    model = ResNet(stem, nn.Sequential(*stages), _head(prev, num_classes, dropout))
    init_weights(model, init)
    return model


# --------------------------------------------------------------------------- multi-scale
class _AttentionFuse(nn.Module):
    """Each branch's pooled summary queries the tokens of every branch (cross-attention)."""

    def __init__(self, dim: int, branches: int, heads: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.scale_embed = nn.Parameter(torch.zeros(1, branches, dim))
        nn.init.normal_(self.scale_embed, 0.0, 0.02)
        self.attn = CrossAttention(dim, heads, dropout=dropout)
        self.norm = make_norm(norm, dim, "tokens")

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        tokens = torch.cat([m.flatten(2) for m in maps], dim=2).transpose(1, 2)  # (N, T, C)
        queries = torch.stack([m.mean(dim=(2, 3)) for m in maps], dim=1) + self.scale_embed
        fused = self.norm(queries + self.attn(queries, tokens))
        return fused.flatten(1)


class _ConcatFuse(nn.Module):
    """Global-average-pool every branch and concatenate."""

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1)


class MultiScaleResNet(nn.Module):
    """Stem, then parallel residual branches on the stem output downsampled by each scale."""

    def __init__(self, stem: nn.Sequential, branches: nn.ModuleList, fuse: nn.Module,
                 head: nn.Sequential) -> None:
        super().__init__()
        self.stem, self.branches, self.fuse, self.head = stem, branches, fuse, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(self.fuse([branch(x) for branch in self.branches]))

    def arch_options(self) -> dict[str, Any]:
        """Current conv widths (``channels``), for rebuilding a pruned model."""
        return _arch(self, self.stem)


def _scales(v: Any) -> str | None:
    ok = (
        isinstance(v, (list, tuple)) and len(v) > 0 and len(set(v)) == len(v)
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in v)
    )
    return None if ok else "a non-empty list of distinct integers > 0, e.g. [1, 2, 4]"


def _branch(prev: int, plan: list[tuple[int, int]], scale: int, pool: str, activation: str,
            norm: str) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = [make_pool(pool, dims=2, kernel=scale)] if scale > 1 else []
    for mid, out in plan:
        layers.append(BasicBlock(prev, mid, out, stride=1, activation=activation, norm=norm))
        prev = out
    return nn.Sequential(*layers), prev


@register_model(
    "msresnet",
    description="Multi-scale ResNet: branches per resolution, concat or cross-attention",
    checks={"scales": _scales, "fuse": one_of("concat", "attention")},
)
def msresnet(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    scales: tuple[int, ...] = (1, 2, 4),
    depth: int = 2,
    width: float = 1.0,
    channels: list[int] | None = None,
    fuse: str = "concat",
    heads: int = 2,
    activation: str = "relu",
    norm: str = "batchnorm",
    pool: str = "avg",
    dropout: float = 0.0,
    init: str = "kaiming",
) -> nn.Module:
    """Multi-scale ResNet: parallel residual branches at several resolutions, merged.

    A 3x3 stem (16 x width channels) feeds one branch per ``scales`` entry; branch ``s``
    pools the stem output by ``s`` and runs ``depth`` BasicBlocks. ``fuse="concat"`` joins the
    pooled branches; ``fuse="attention"`` lets each branch summary cross-attend to the tokens
    of all branches (``heads`` heads) before the linear head. ``channels`` overrides every
    3x3 conv width (1 + 2 * depth * len(scales) values: stem, then conv1, conv2 of each block,
    branch by branch), for rebuilding pruned models (:meth:`MultiScaleResNet.arch_options`).
    """
    scales = tuple(scales)
    per_branch = 2 * depth
    check_widths("msresnet", "channels", channels, 1 + per_branch * len(scales))
    prefix, c_in, h, w = image_input(input_shape, model="msresnet")
    if max(scales) > min(h, w):
        raise ModelError(
            f"model 'msresnet' option 'scales' = {list(scales)} is invalid for input "
            f"{tuple(input_shape)}; allowed: scales <= {min(h, w)}"
        )
    if channels is None:
        c = scaled(16, width)
        channels = [c] * (1 + per_branch * len(scales))
    stem = _stem(prefix, c_in, channels[0], activation, norm)
    branches, outs = [], []
    for i, scale in enumerate(scales):
        plan = list(_block_plan(channels[1 + i * per_branch: 1 + (i + 1) * per_branch]))
        branch, out = _branch(channels[0], plan, scale, pool, activation, norm)
        branches.append(branch)
        outs.append(out)
    fuser = _make_fuse(fuse, outs, heads, norm, dropout)
    model = MultiScaleResNet(stem, nn.ModuleList(branches), fuser,
                             _fuse_head(sum(outs), num_classes, dropout))
    init_weights(model, init)
    return model


def _make_fuse(fuse: str, outs: list[int], heads: int, norm: str, dropout: float) -> nn.Module:
    if fuse == "concat":
        return _ConcatFuse()
    if len(set(outs)) != 1:
        raise ModelError(
            f"model 'msresnet' option 'fuse' = 'attention' needs equal branch widths; got {outs}"
        )
    check_heads(outs[0], heads, model="msresnet")
    return _AttentionFuse(outs[0], len(outs), heads, norm, dropout)


def _fuse_head(features: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(*drop_identity(
        nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        nn.Linear(features, num_classes),
    ))

