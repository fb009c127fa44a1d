"""Matplotlib figures as PNG bytes (Agg backend, no display). Pure: data in, bytes out."""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

__all__ = ["pareto_front", "pareto_plot", "curves_plot", "lr_find_plot", "confusion_plot", "sweep_plot"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: higher ``y`` (accuracy) and lower ``x``
    (latency, size), at least as good on both and better on one. Sorted by ``x``."""
    front = []
    for i, (x, y) in enumerate(points):
        beaten = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(names: Sequence[str], xs: Sequence[float], ys: Sequence[float], *, xlabel: str,
                title: str, log_x: bool = False) -> bytes | None:
    """Scatter of accuracy vs a cost with the Pareto front drawn and marked; None when fewer
    than one complete point."""
    pts = [(n, x, y) for n, x, y in zip(names, xs, ys) if _finite(x) and _finite(y)]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    front = pareto_front([(x, y) for _, x, y in pts])
    ax.scatter([p[1] for p in pts], [100 * p[2] for p in pts], color="#4c72b0", zorder=3, label="model")
    fx = [pts[i][1] for i in front]
    fy = [100 * pts[i][2] for i in front]
    ax.step(fx, fy, where="post", color="#c44e52", lw=1.5, zorder=2, label="Pareto front")
    ax.scatter(fx, fy, s=140, facecolors="none", edgecolors="#c44e52", lw=2, zorder=4)
    for text, x, y, rise in _label_layout([(n, x, 100 * y) for n, x, y in pts], log_x=log_x):
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, rise), fontsize=8)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


# fractions of the axes: points closer than _SAME share one marker (a rejected step's model
# is its input's), labels closer than _NEAR_X and _NEAR_Y would print over each other
_SAME, _NEAR_X, _NEAR_Y = 0.01, 0.15, 0.06


def _unit_spots(pts: Sequence[tuple[str, float, float]], log_x: bool) -> list[tuple[float, float]]:
    """Each point as fractions of the data's x and y ranges (what the axes show)."""
    def unit(vals: list[float]) -> list[float]:
        lo, hi = min(vals), max(vals)
        return [(v - lo) / (hi - lo) if hi > lo else 0.0 for v in vals]

    xs = [math.log10(x) if log_x and x > 0 else x for _, x, _ in pts]
    return list(zip(unit(xs), unit([y for _, _, y in pts])))


def _same_spot(spots: Sequence[tuple[float, float]]) -> list[list[int]]:
    """Indices grouped by the spot they share (closer than ``_SAME`` on both axes)."""
    groups: list[list[int]] = []
    for i, (u, v) in enumerate(spots):
        near = (g for g in groups if abs(spots[g[0]][0] - u) < _SAME and abs(spots[g[0]][1] - v) < _SAME)
        group = next(near, None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    return groups


def _label_layout(pts: Sequence[tuple[str, float, float]], *,
                  log_x: bool = False) -> list[tuple[str, float, float, int]]:
    """``(text, x, y, rise)`` per label of the named points: points on one spot get one label
    naming them all ("retrain, prune"); a label near an earlier one rises above it (``rise``:
    its offset in points)."""
    spots = _unit_spots(pts, log_x)
    out, placed = [], []  # placed: (u, v, rise) of the labels so far
    for g in _same_spot(spots):
        u, v = spots[g[0]]
        taken = {r for pu, pv, r in placed if abs(pu - u) < _NEAR_X and abs(pv - v) < _NEAR_Y}
        rise = next(r for r in range(5, 10 * len(pts) + 6, 10) if r not in taken)
        placed.append((u, v, rise))
        out.append((", ".join(pts[i][0] for i in g), pts[g[0]][1], pts[g[0]][2], rise))
    return out


def curves_plot(series: dict[str, list[dict[str, Any]]], *, metric: str = "val_accuracy") -> bytes | None:
    """Training curves of several runs overlaid: loss (train solid, val dashed), ``metric``
    and learning rate per epoch. ``series``: label -> metrics.jsonl rows."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    metric = _curve_metric(series, metric)
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, (label, rows) in enumerate(series.items()):
        color = f"C{i % 10}"
        ep = [r.get("epoch") for r in rows]
        for key, style in (("train_loss", "-"), ("val_loss", "--")):
            vals = [r.get(key) for r in rows]
            if any(_finite(v) for v in vals):
                axes[0].plot(ep, [v if _finite(v) else float("nan") for v in vals], style, color=color,
                             marker="o", ms=3, label=f"{label} {key.split('_')[0]}")
        m = [r.get(metric) for r in rows]
        if any(_finite(v) for v in m):
            axes[1].plot(ep, m, color=color, marker="o", ms=3, label=label)
        lr = [r.get("lr") for r in rows]
        if any(_finite(v) for v in lr):
            axes[2].plot(ep, lr, color=color, marker="o", ms=3, label=label)
    for ax, title in zip(axes, ("loss", metric, "learning rate")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # an empty legend is a matplotlib warning on stderr
            ax.legend(fontsize=7)
    return _png(fig)


def _curve_metric(series: dict[str, list[dict[str, Any]]], metric: str) -> str:
    """``metric`` when some run logged it, else ``val_r2`` (regression runs log no
    ``val_accuracy``), else the first other validation metric logged."""
    rows = [r for rs in series.values() for r in rs]
    logged = [k for r in rows for k, v in r.items() if k.startswith("val_") and k != "val_loss" and _finite(v)]
    return next((m for m in (metric, "val_r2", *logged) if m in logged), metric)


def lr_find_plot(curve: dict[str, Any]) -> bytes | None:
    """The LR range test: raw and smoothed loss against the learning rate, the suggestion marked."""
    lrs, losses = curve.get("lrs") or [], curve.get("losses") or []
    if not lrs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses, color="#999999", lw=1, label="loss")
    if curve.get("smoothed"):
        ax.plot(lrs, curve["smoothed"], color="#4c72b0", lw=2, label="smoothed")
    if _finite(curve.get("suggestion")):
        ax.axvline(curve["suggestion"], color="#c44e52", ls="--", label=f"suggested {curve['suggestion']:.2e}")
    smooth = [v for v in (curve.get("smoothed") or losses) if _finite(v)]
    if smooth:  # the last steps diverge by design: keep them from flattening the curve
        top = max(smooth[0], 4 * min(smooth)) * 1.1
        ax.set_ylim(min(min(smooth), min((v for v in losses if _finite(v)), default=0)) * 0.9, top)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def confusion_plot(matrix: Sequence[Sequence[int]], class_names: Sequence[str], *, title: str) -> bytes | None:
    """Confusion matrix (rows: true class, columns: predicted), counts written in the cells."""
    if not matrix:
        return None
    import numpy as np

    m = np.asarray(matrix)
    plt = _plt()
    n = len(m)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * n + 2), max(3.5, 0.5 * n + 1.5)))
    im = ax.imshow(m, cmap="Blues")
    names = list(class_names)[:n] if class_names else [str(i) for i in range(n)]
    ax.set_xticks(range(n), names, rotation=45 if n > 10 else 0, fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    if n <= 20:
        hi = m.max() / 2 if m.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > hi else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _png(fig)


def sweep_plot(groups: dict[str, list[list[dict[str, Any]]]], *, metric: str = "val_accuracy") -> bytes | None:
    """Variants overlaid: the mean ``metric`` per epoch over seeds, with a min-max band."""
    if not any(groups.values()):
        return None
    import numpy as np

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for i, (label, runs) in enumerate(groups.items()):
        color = f"C{i % 10}"
        for ax, key in zip(axes, (metric, "train_loss")):
            n = min((len(r) for r in runs if r), default=0)
            if n == 0:
                continue
            vals = np.array([[r[e].get(key, np.nan) if _finite(r[e].get(key)) else np.nan for e in range(n)]
                             for r in runs if r], dtype=float)
            ep = np.arange(1, n + 1)
            ax.plot(ep, np.nanmean(vals, 0), color=color, marker="o", ms=3, label=f"{label} (n={len(vals)})")
            ax.fill_between(ep, np.nanmin(vals, 0), np.nanmax(vals, 0), color=color, alpha=0.15)
    for ax, title in zip(axes, (metric, "train_loss")):
        ax.set_title(f"{title}: mean over seeds (band: min-max)")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)
