"""The stage table: one row per stage from ``results.json``, formatted for HTML, Markdown
and the terminal. Pure functions."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

__all__ = ["COLUMNS", "stage_rows", "stage_columns", "latency_sizes", "format_cell", "markdown_table",
           "text_table", "per_class_rows", "bench_lookup", "regression_note", "verdict_note",
           "size_text"]


def stage_columns(sizes: tuple[int, int] = (1, 64)) -> dict[str, str]:
    """Column key -> header; the latency columns name the smallest and largest batch size
    the bench stages timed (:func:`latency_sizes`), one pair when they are the same."""
    lo, hi = sizes
    cols = {
        "stage": "stage", "type": "type", "status": "status", "seconds": "time",
        "accuracy": "accuracy", "params": "params", "macs": "MACs", "size_bytes": "size on disk",
        "p50_lo": f"p50 ms (b{lo})", "p50_hi": f"p50 ms (b{hi})", "speed_lo": f"speedup b{lo}",
        "speed_hi": f"speedup b{hi}", "note": "note",
    }
    if lo == hi:  # one batch size timed: the same figures twice would read as two measurements
        del cols["p50_hi"], cols["speed_hi"]
    return cols


#: the columns with the bench's default batch sizes (1 and 64)
COLUMNS: dict[str, str] = stage_columns()


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _human(n: Any, unit: str = "") -> str:
    if not _num(n):
        return "–"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}" if float(n).is_integer() else f"{n:.3g}{unit}"


def size_text(n: Any) -> str:
    """Bytes in binary units ("261.6 KiB"), as every size dlopt prints (JSON keeps bytes)."""
    if not _num(n):
        return "–"
    for div, suffix in ((2**20, "MiB"), (2**10, "KiB")):
        if n >= div:
            return f"{n / div:.1f} {suffix}"
    return f"{n:.0f} B"


def _objective_text(v: Any) -> str:
    """An objective's value: integer-valued as an integer (a parameter count: ``4867``, not
    ``4867.0000``), others to 4 significant digits (``0.7969``, ``1.235e-05``)."""
    if not _num(v):
        return "–"
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.4g}"


def _speed(e: dict[str, Any] | None) -> str:
    if not e or not _num(e.get("speedup")):
        return "–"
    verdict = e.get("verdict") or ""
    return "baseline" if verdict == "baseline" else f"{e['speedup']:.2f}x {verdict}"


_FORMAT: dict[str, Callable[[Any], str]] = {
    "seconds": lambda v: f"{v:.1f}s" if _num(v) else "–",
    "accuracy": lambda v: f"{100 * v:.2f}%" if _num(v) else "–",
    "params": _human,
    "macs": _human,
    "size_bytes": size_text,
    "p50_lo": lambda v: f"{v:.3f}" if _num(v) else "–",
    "p50_hi": lambda v: f"{v:.3f}" if _num(v) else "–",
    "speed_lo": _speed,
    "speed_hi": _speed,
}


def format_cell(key: str, value: Any) -> str:
    """One cell as text."""
    fmt = _FORMAT.get(key)
    if fmt is not None:
        return fmt(value)
    return "–" if value is None else str(value)


def bench_lookup(stages: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Model name -> batch size -> latency entry, from every bench stage (the last wins)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for s in stages:
        if s["type"] == "bench":
            out.update(s.get("timings", {}).get("models", {}))
    return out


# metrics that are fractions of the samples, shown as percentages (loss, mse, r2, auc are not)
_FRACTIONS = ("accuracy", "top5", "f1_macro", "precision_macro", "recall_macro")


def _mean_std_pct(mean: float, std: float) -> str:
    return f"{100 * mean:.2f}±{100 * std:.2f}%"


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.4g}±{std:.2g}"


def regression_note(test: Mapping[str, Any]) -> str:
    """A row's words for a regression run, which has no accuracy figure: its test r2, mae and
    rmse, those ``test`` holds ("test r2 0.8648, mae 0.8290"); "" where it has an accuracy."""
    if _num(test.get("accuracy")):
        return ""
    parts = [f"{k} {test[k]:.4f}" for k in ("r2", "mae", "rmse") if _num(test.get(k))]
    return f"test {', '.join(parts)}" if parts else ""


def _note(s: dict[str, Any]) -> str:
    m = s.get("metrics", {})
    test = {k[len("test_"):]: v for k, v in m.items() if k.startswith("test_")}
    parts = (regression_note({**test, "accuracy": m.get("accuracy")}), _kind_note(s))
    return "; ".join(p for p in parts if p)


def _kind_note(s: dict[str, Any]) -> str:
    m, kind = s.get("metrics", {}), s["type"]
    if kind == "lr_find":
        return f"suggested lr {m.get('suggested_lr', float('nan')):.2e}"
    if kind == "tune":
        vals = ", ".join(f"{k} {_objective_text(v)}" for k, v in (m.get("best_values") or {}).items() if _num(v))
        return f"best trial {m.get('best_trial')} ({vals}) of {m.get('trials')} trials, {m.get('pruned', 0)} pruned"
    if kind == "export":
        return f"ONNX parity: max |diff| {m.get('parity_max_abs_diff', float('nan')):.1e} on {m.get('parity_samples')}"
    if kind == "serve_check":
        return f"{m.get('equal')}/{m.get('samples')} served answers equal local ONNX Runtime"
    if kind == "sweep":
        fmt = _mean_std_pct if m.get("metric", "accuracy") in _FRACTIONS else _mean_std
        parts = [f"{k} {fmt(v['mean'], v['std'])}" if _num(v.get("mean")) and _num(v.get("std"))
                 else f"{k} –" for k, v in (m.get("variants") or {}).items()]
        return (f"test {m.get('metric', 'accuracy')}: " if parts else "") + "; ".join(parts)
    if kind == "bench":
        return f"baseline: {m.get('baseline')}"
    return verdict_note(m)


def verdict_note(m: Mapping[str, Any]) -> str:
    """A compression step's guard verdict from its ``accepted`` and ``reason`` ("accepted: ...",
    "rejected, input kept: ..."); "" without one."""
    if "accepted" not in m:
        return ""
    word = "accepted" if m["accepted"] else "rejected, input kept"
    return f"{word}: {m['reason']}" if m.get("reason") else word


def _status(s: dict[str, Any]) -> Any:
    """The status cell; a step its guard rejected says so there too, as its figures are the
    input model's and the terminal table has no note column."""
    if s.get("metrics", {}).get("accepted") is False:
        return f"{s.get('status')}, rejected"
    return s.get("status")


def latency_sizes(*results: dict[str, Any]) -> tuple[int, int]:
    """The smallest and largest batch size any bench stage of ``results`` timed ((1, 64)
    when none ran: the bench's defaults)."""
    sizes = {int(b) for res in results for per_model in bench_lookup(res.get("stages", [])).values()
             for b in per_model if str(b).isdigit()}
    return (min(sizes), max(sizes)) if sizes else (1, 64)


def stage_rows(results: dict[str, Any], sizes: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """One dict per stage with the :func:`stage_columns` keys (raw values, format with
    format_cell); latency at the batch ``sizes`` (default: :func:`latency_sizes`)."""
    stages = results.get("stages", [])
    bench = bench_lookup(stages)
    lo, hi = (str(n) for n in (sizes or latency_sizes(results)))
    rows = []
    for s in stages:
        m = s.get("metrics", {})
        b = bench.get(s["name"], {})
        rows.append({
            "stage": s["name"], "type": s["type"], "status": _status(s), "seconds": s.get("seconds"),
            "accuracy": m.get("accuracy"), "params": m.get("params"), "macs": m.get("macs"),
            "size_bytes": m.get("size_bytes"),
            "p50_lo": (b.get(lo) or {}).get("p50_ms"), "p50_hi": (b.get(hi) or {}).get("p50_ms"),
            "speed_lo": b.get(lo), "speed_hi": b.get(hi), "note": _note(s),
        })
    return rows


def _escape_md(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(rows: Sequence[dict[str, Any]], columns: dict[str, str] = COLUMNS) -> str:
    """A GitHub-flavoured Markdown table."""
    head = "| " + " | ".join(columns.values()) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_escape_md(format_cell(k, r.get(k))) for k in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def text_table(rows: Sequence[dict[str, Any]], columns: dict[str, str] | None = None) -> str:
    """A plain aligned table for the terminal (``columns`` without their note)."""
    cols = {k: v for k, v in (columns or COLUMNS).items() if k != "note"}
    cells = [[format_cell(k, r.get(k)) for k in cols] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(cols.values())]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(list(cols.values())), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def per_class_rows(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows: true)."""
    rows = []
    n = len(matrix)
    for i in range(n):
        tp = matrix[i][i]
        support = sum(matrix[i])
        predicted = sum(matrix[r][i] for r in range(n))
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        name = class_names[i] if i < len(class_names) else str(i)
        rows.append({"class": name, "precision": p, "recall": r, "f1": f1, "support": support})
    return rows
