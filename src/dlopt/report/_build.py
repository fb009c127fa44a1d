"""Build ``report.html`` (self-contained: plots embedded as base64 PNG), ``report.md`` (plots
beside it in ``report-files/``) from a pipeline run's ``results.json`` and stage outputs;
and side-by-side comparisons of several runs."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dlopt.errors import ConfigError
from dlopt.report import _plots as plots
from dlopt.report._schema import check_results, load_json, read_json
from dlopt.report._tables import (bench_lookup, format_cell, latency_sizes, markdown_table, per_class_rows,
                                   regression_note, stage_columns, stage_rows, text_table, verdict_note)

__all__ = ["Figure", "Section", "build_report", "compare_runs", "load_results", "stage_text"]


@dataclass
class Figure:
    """One embedded plot: ``slug`` names its PNG file in ``report-files/``."""

    slug: str
    title: str
    png: bytes


@dataclass
class Section:
    """A report section: a title, HTML/Markdown bodies, figures."""

    title: str
    html: str = ""
    md: str = ""
    figures: list[Figure] = field(default_factory=list)


def load_results(root: str | Path) -> dict[str, Any]:
    """``results.json`` of a pipeline run directory (ConfigError when there is none)."""
    path = Path(root) / "results.json"
    try:
        doc = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{root}: no results.json; allowed: a pipeline run directory (dlopt run)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is unreadable: {type(exc).__name__}") from None
    check_results(doc, path)
    return doc


def stage_text(root: str | Path) -> str:
    """The stage table of a pipeline run for the terminal (what ``dlopt run``/``report`` print)."""
    results = load_results(root)
    return text_table(stage_rows(results), stage_columns(latency_sizes(results)))


def _stage_dir(root: Path, s: dict[str, Any]) -> Path:
    return root / s["name"]


def _artifact(root: Path, s: dict[str, Any], name: str) -> Path | None:
    rel = s.get("artifacts", {}).get(name)
    return _stage_dir(root, s) / rel if rel else None


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _table_html(rows: Sequence[dict[str, Any]], columns: dict[str, str], *, table_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in columns.values())
    body = "".join("<tr>" + "".join(f"<td>{html.escape(format_cell(k, r.get(k)))}</td>" for k in columns) + "</tr>"
                   for r in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ------------------------------------------------------------------------------ sections
def _section_stages(results: dict[str, Any]) -> Section:
    rows = stage_rows(results)
    bench = [s for s in results.get("stages", []) if s["type"] == "bench"]
    note = ""
    if bench:
        b = bench[-1]
        note = (f"Latency: ONNX Runtime (the serving runtime), p50 of fresh-process runs on "
                f"{b.get('metrics', {}).get('baseline')}'s test samples; speedup vs the baseline "
                f"{b.get('metrics', {}).get('baseline')!r}, with its verdict (noise threshold: the runs' IQRs, "
                f"at least 5%). Accuracy and size: each stage's own test split and file.")
    cols = stage_columns(latency_sizes(results))
    return Section("Stages", f"<p>{html.escape(note)}</p>" + _table_html(rows, cols, table_id="stage-table"),
                   (note + "\n\n" if note else "") + markdown_table(rows, cols))


def _pareto_points(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Model name -> accuracy, latency (p50 at the smallest batch timed) and size for the
    cost plots. Accuracy is the stage's own test accuracy, the figure its table row shows
    (the bench's, on its sample subset, only for a model no stage measured); latency and
    size (the ONNX file, the same format for every model) are the bench's."""
    stages = results.get("stages", [])
    own = {s["name"]: s.get("metrics", {}).get("accuracy") for s in stages}
    models: dict[str, dict[str, Any]] = {}
    for s in stages:
        if s["type"] == "bench":
            models.update(s.get("metrics", {}).get("models", {}))
    if not models:
        return {s["name"]: {"accuracy": own[s["name"]], "latency": None, "size": s["metrics"].get("size_bytes")}
                for s in stages if _num(own[s["name"]]) and s["type"] != "export"}
    bench, lo = bench_lookup(stages), str(latency_sizes(results)[0])
    return {n: {"accuracy": own.get(n) if _num(own.get(n)) else m.get("accuracy"),
                "latency": (bench.get(n, {}).get(lo) or {}).get("p50_ms"), "size": m.get("size_bytes")}
            for n, m in models.items()}


def _section_pareto(results: dict[str, Any]) -> Section | None:
    points = _pareto_points(results)
    names = list(points)
    acc = [points[n]["accuracy"] for n in names]
    figs = []
    png = plots.pareto_plot(names, [points[n]["latency"] for n in names], acc,
                            xlabel=f"ONNX Runtime p50 latency, batch {latency_sizes(results)[0]} (ms)",
                            title="accuracy vs latency")
    if png:
        figs.append(Figure("pareto-latency", "Accuracy vs latency (Pareto front marked)", png))
    size = [points[n]["size"] for n in names]
    png = plots.pareto_plot(names, [v / 1024 if _num(v) else None for v in size], acc,
                            xlabel="size on disk (KiB)", title="accuracy vs size")
    if png:
        figs.append(Figure("pareto-size", "Accuracy vs size on disk (Pareto front marked)", png))
    if not figs:
        return None
    text = ("Accuracy: each stage's test accuracy, as in the stage table; size: the ONNX file the bench "
            "served (the stage's own file without a bench). Red rings: the Pareto front (no other model "
            "is both more accurate and cheaper).")
    return Section("Accuracy vs cost", f"<p>{text}</p>", text, figs)


def _section_curves(root: Path, results: dict[str, Any]) -> Section | None:
    series = {}
    for s in results.get("stages", []):
        run = _artifact(root, s, "run")
        if run is not None and (run / "metrics.jsonl").exists():
            series[s["name"]] = read_json(run / "metrics.jsonl") or []
    png = plots.curves_plot(series)
    if not png:
        return None
    return Section("Training curves", "", "", [Figure("curves", "Loss, validation accuracy and learning rate", png)])


def _section_tuning(root: Path, results: dict[str, Any]) -> Section | None:
    figs, texts = [], []
    for s in results.get("stages", []):
        if s["type"] == "lr_find":
            curve = read_json(_stage_dir(root, s) / "lr_find.json")
            png = plots.lr_find_plot(curve or {})
            if png:
                figs.append(Figure(f"lr-find-{s['name']}", f"LR finder ({s['name']})", png))
        if s["type"] == "tune":
            figs += _tune_figures(root, s)
            m = s.get("metrics", {})
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in (m.get("best_params") or {}).items())
            texts.append(f"{s['name']}: best trial {m.get('best_trial')} of {m.get('trials')}: {params}")
    if not figs and not texts:
        return None
    body = "".join(f"<p>{html.escape(t)}</p>" for t in texts)
    return Section("Learning rate and tuning", body, "\n\n".join(texts), figs)


_TUNE_PLOTS = (("optimization_history", "tuning history"), ("param_importances", "parameter importances"),
               ("pareto_front", "Pareto front of the trials"))


def _tune_figures(root: Path, s: dict[str, Any]) -> list[Figure]:
    """A tune stage's study plots, as its record lists them (``pareto_front``: several objectives)."""
    figs = []
    for key, title in _TUNE_PLOTS:
        path = _artifact(root, s, key)
        if path is not None and path.is_file():
            figs.append(Figure(f"{key.replace('_', '-')}-{s['name']}", f"{s['name']}: {title}", path.read_bytes()))
    return figs


def _final_stage(results: dict[str, Any]) -> dict[str, Any] | None:
    """The final model: the run that serve_check/export deploys, else the last run stage."""
    by_name = {s["name"]: s for s in results.get("stages", [])}
    for kind in ("serve_check", "export"):
        for s in reversed(results.get("stages", [])):
            if s["type"] != kind:
                continue
            cur: dict[str, Any] | None = s
            seen: set[str] = set()  # a hand-edited file may loop its inputs
            while cur is not None and "run" not in cur.get("artifacts", {}) and cur["name"] not in seen:
                seen.add(cur["name"])
                ins = cur.get("inputs") or []
                cur = by_name.get(ins[0]) if ins else None
            if cur is not None and "run" in cur.get("artifacts", {}):
                return cur
    runs = [s for s in results.get("stages", []) if "run" in s.get("artifacts", {})]
    return runs[-1] if runs else None


def _section_final(root: Path, results: dict[str, Any]) -> Section | None:
    s = _final_stage(results)
    if s is None:
        return None
    summary = read_json(_artifact(root, s, "run") / "summary.json") or {}  # type: ignore[operator]
    matrix = summary.get("confusion_matrix")
    if not matrix:
        return None
    names = (summary.get("data_info") or {}).get("class_names") or []
    png = plots.confusion_plot(matrix, names, title=f"{s['name']}: confusion matrix (test split)")
    rows = per_class_rows(matrix, names)
    cols = {"class": "class", "precision": "precision", "recall": "recall", "f1": "F1", "support": "support"}
    fmt_rows = [{k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    text = f"Final model: stage {s['name']!r} (the model that is exported and served)."
    return Section("Final model", f"<p>{html.escape(text)}</p>" + _table_html(fmt_rows, cols, table_id="per-class"),
                   text + "\n\n" + markdown_table(fmt_rows, cols),
                   [Figure("confusion", "Confusion matrix", png)] if png else [])


def _section_sweeps(root: Path, results: dict[str, Any]) -> list[Section]:
    out = []
    for s in results.get("stages", []):
        if s["type"] != "sweep":
            continue
        m, t = s.get("metrics", {}), s.get("timings", {})
        groups: dict[str, list[list[dict[str, Any]]]] = {}
        for rel in s.get("artifacts", {}).values():
            label = rel.split("/")[0]
            groups.setdefault(label, []).append(read_json(_stage_dir(root, s) / rel / "metrics.jsonl") or [])
        metric = m.get("metric", "accuracy")
        rows = []
        for label, v in (m.get("variants") or {}).items():
            tv = t.get(label, {})
            rows.append({"variant": label,
                         "metric": (f"{v['mean']:.4f} ± {v['std']:.4f}" if _num(v.get("mean")) and _num(v.get("std"))
                                    else "–"),
                         "time": (f"{tv['seconds_mean']:.1f} ± {tv['seconds_std']:.1f} s"
                                  if _num(tv.get("seconds_mean")) and _num(tv.get("seconds_std")) else "–"),
                         "n": len(v.get("values", []))})
        cols = {"variant": "variant", "metric": f"test {metric} (mean ± std)", "time": "train time (mean ± std)",
                "n": "seeds"}
        png = plots.sweep_plot(groups, metric=f"val_{metric}")
        out.append(Section(f"Comparison: {s['name']}", _table_html(rows, cols, table_id=f"sweep-{s['name']}"),
                           markdown_table(rows, cols),
                           [Figure(f"sweep-{s['name']}", "Curves overlaid (mean over seeds)", png)] if png else []))
    return out


def _dirty_text(dirty: Any) -> str:
    # None: no git checkout (an installed dlopt) or a results.json from before the flag
    return {True: "yes (the commit alone is not the code that ran)", False: "no"}.get(dirty, "unknown")


def _bench_load(root: Path, results: dict[str, Any]) -> str | None:
    """The 1-minute load average the last bench stage ran under, as ``dlopt bench`` prints it:
    latency figures mean little without it on a shared machine."""
    benches = [s for s in results.get("stages", []) if s["type"] == "bench" and "bench" in s.get("artifacts", {})]
    doc = read_json(_artifact(root, benches[-1], "bench")) if benches else None  # type: ignore[arg-type]
    load = ((doc or {}).get("environment") or {}).get("load_average")
    return f"{load[0]:.1f}" if load else None


def _section_env(root: Path, results: dict[str, Any]) -> Section:
    env = results.get("environment", {})
    cpu = env.get("cpu", {})
    load = _bench_load(root, results)
    rows = [("CPU", cpu.get("model")), *([("load average at the bench", load)] if load else []),
            ("logical CPUs", env.get("logical_cpus")), ("usable CPUs", env.get("usable_cpus")),
            ("torch threads", env.get("torch_threads")),
            ("OS", env.get("os")), ("Python", env.get("python")), ("git commit", env.get("git_commit")),
            ("uncommitted changes", _dirty_text(env.get("git_dirty")))]
    rows += [(k, v) for k, v in (env.get("versions") or {}).items()]
    cmds = list(results.get("commands", []))
    for name, lines in (results.get("stage_commands") or {}).items():
        cmds += [f"# {name}: {c}" for c in lines]
    tbl = "<table id='environment'>" + "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows) + "</table>"
    pre = "<pre>" + html.escape("\n".join(cmds)) + "</pre>"
    md = "\n".join(f"- {k}: {v}" for k, v in rows) + "\n\nReproduce:\n\n```\n" + "\n".join(cmds) + "\n```"
    return Section("Environment and commands", tbl + "<h3>Reproduce</h3>" + pre, md)


# ------------------------------------------------------------------------------ rendering
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:24px}h2{font-size:19px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
thead th{background:#f3f3f3}tbody tr:nth-child(even){background:#fafafa}
figure{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}figcaption{font-size:12px;color:#555}
img{max-width:100%;border:1px solid #eee}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto}
"""
# marks every image with its decoded size once the page has loaded (read by headless checks)
_SCRIPT = ("window.addEventListener('load',function(){document.querySelectorAll('img').forEach(function(i){"
           "i.setAttribute('data-natural',i.naturalWidth+'x'+i.naturalHeight);});"
           "document.body.setAttribute('data-loaded','1');});")


def _render_html(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body>",
             f"<h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>"]
    for sec in sections:
        parts.append(f"<section><h2>{html.escape(sec.title)}</h2>{sec.html}")
        for fig in sec.figures:
            b64 = base64.b64encode(fig.png).decode()
            parts.append(f"<figure><img class='plot' alt='{html.escape(fig.title)}' src='data:image/png;base64,{b64}'>"
                         f"<figcaption>{html.escape(fig.title)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)


def _render_md(title: str, subtitle: str, sections: Sequence[Section], files: str) -> str:
    out = [f"# {title}", "", subtitle, ""]
    for sec in sections:
        out += [f"## {sec.title}", "", sec.md, ""]
        out += [f"![{fig.title}]({files}/{fig.slug}.png)" for fig in sec.figures] + [""]
    return "\n".join(out)


def _write(out_dir: Path, stem: str, title: str, subtitle: str, sections: list[Section]) -> dict[str, Path]:
    try:
        return _write_files(out_dir, stem, title, subtitle, sections)
    except OSError as exc:  # e.g. a directory where report.html goes, a file named report-files
        raise ConfigError(f"cannot write the {stem} in {out_dir}: {exc.strerror or exc}: {exc.filename}") from None


def _write_files(out_dir: Path, stem: str, title: str, subtitle: str, sections: list[Section]) -> dict[str, Path]:
    files = out_dir / f"{stem}-files"
    files.mkdir(parents=True, exist_ok=True)
    written = set()
    for sec in sections:
        for fig in sec.figures:
            fig.slug = re.sub(r"[^A-Za-z0-9_.-]", "-", fig.slug)
            (files / f"{fig.slug}.png").write_bytes(fig.png)
            written.add(f"{fig.slug}.png")
    for old in files.glob("*.png"):  # plots of stages an earlier report had: report.md no longer shows them
        if old.name not in written:
            old.unlink()
    html_path, md_path = out_dir / f"{stem}.html", out_dir / f"{stem}.md"
    html_path.write_text(_render_html(title, subtitle, sections))
    md_path.write_text(_render_md(title, subtitle, sections, files.name))
    return {"html": html_path, "md": md_path, "files": files}


def build_report(root: str | Path) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` (+ ``report-files/``) in the pipeline run
    directory ``root`` from its ``results.json``; returns their paths (keys html, md,
    files, results)."""
    root = Path(root)
    results = load_results(root)
    sections: list[Section | None] = [
        _section_stages(results), _section_pareto(results), _section_curves(root, results),
        _section_tuning(root, results), _section_final(root, results), *_section_sweeps(root, results),
        _section_env(root, results)]
    kept = [s for s in sections if s is not None]
    sub = f"Pipeline run {root} — updated {results.get('updated', '?')}"
    paths = _write(root, "report", f"dlopt pipeline: {results.get('pipeline', root.name)}", sub, kept)
    paths["results"] = root / "results.json"
    return paths


# ------------------------------------------------------------------------------- compare
def _labels(paths: Sequence[Path], results: dict[Path, dict[str, Any]]) -> list[str]:
    """One distinct label per run: its name (a pipeline's name, a training run's folder name),
    or the path as given where names repeat (two runs of one pipeline), so rows and curves of
    one run never pass for another's."""
    names = [str(results[p].get("pipeline", p.name)) if p in results else p.name for p in paths]
    out = [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]
    return [lab if out.count(lab) == 1 else f"{lab} ({i + 1})" for i, lab in enumerate(out)]


def _as_run(path: Path, label: str, sizes: tuple[int, int],
            res: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(table rows with latency at batch ``sizes``, curves) of a pipeline run directory (``res``:
    its results) or a single training run, labelled ``label``."""
    if res is not None:
        rows = [{**r, "run": label} for r in stage_rows(res, sizes)]
        curves = {}
        for s in res.get("stages", []):
            run = _artifact(path, s, "run")
            if run is not None and (run / "metrics.jsonl").exists():
                curves[f"{label}/{s['name']}"] = read_json(run / "metrics.jsonl") or []
        return rows, curves
    summary, problem = load_json(path / "summary.json")
    if summary is None:
        why = "" if problem == "missing" else f" ({problem})"
        raise ConfigError(f"{path}: neither results.json nor a readable summary.json{why}; allowed: a pipeline "
                          "run or a training run")
    return [_summary_row(path, label, summary)], {label: read_json(path / "metrics.jsonl") or []}


def _summary_row(path: Path, label: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The table row of a training run, or of a compression step's output run: typed by its
    step and sized by the file it delivers (an accepted step's summary holds that file's size:
    an INT8 run's ``model.int8.onnx``, not the FP32 weights kept beside it)."""
    test, step = summary.get("test") or {}, (summary.get("compression") or {}).get("step")
    weights = path / "model.safetensors"
    size = summary.get("size_bytes") if step and summary.get("accepted") else (
        weights.stat().st_size if weights.is_file() else None)
    epochs = _own_epochs(summary)
    # a rejected step's summary keeps its input's training time; the step's own is not recorded
    own_time = bool(epochs) and (not step or summary.get("accepted") is not False)
    notes = (regression_note(test), verdict_note(summary), _epochs_text(epochs, step))
    return {"run": label, "stage": path.name, "type": step or "train", "status": "", "accuracy": test.get("accuracy"),
            "params": summary.get("params"), "macs": summary.get("macs"), "size_bytes": size,
            "seconds": summary.get("train_seconds") if own_time else None, "note": "; ".join(p for p in notes if p)}


# post-training quantization methods (dlopt.compress.QUANT_METHODS of kind "ptq"): they train nothing
_PTQ = ("static", "dynamic", "auto")


def _own_epochs(summary: dict[str, Any]) -> Any:
    """The epochs the run itself trained: a compression step's from its options (its summary's
    ``epochs`` are its input's when the guard rejected it), per step for prune."""
    comp = summary.get("compression") or {}
    opts, step = comp.get("options") or {}, comp.get("step")
    if step is None:
        return summary.get("epochs")
    if step == "quantize" and comp.get("method") in _PTQ:
        return 0
    return opts.get("finetune_epochs" if step == "prune" else "epochs")


def _epochs_text(epochs: Any, step: str | None) -> str:
    if not _num(epochs) or not epochs:
        return ""
    text = f"{epochs:g} epoch{'' if epochs == 1 else 's'}"
    return f"fine-tuned {text} per step" if step == "prune" else text


def compare_runs(runs: Sequence[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Several pipeline (or training) runs side by side: one table, curves overlaid. Writes
    ``compare.html`` / ``compare.md`` in ``out_dir``."""
    if len(runs) < 2:
        raise ConfigError(f"compare needs at least 2 runs, got {len(runs)}")
    rows, curves = [], {}
    paths = [Path(r) for r in runs]
    # each pipeline run's results.json read (and checked) once
    results = {p: load_results(p) for p in paths if (p / "results.json").exists()}
    sizes = latency_sizes(*results.values())
    labels = _labels(paths, results)
    for path, label in zip(paths, labels):
        rws, cv = _as_run(path, label, sizes, results.get(path))
        rows += rws
        curves.update(cv)
    # a pipeline's row times its whole stage, a run directory's only its training
    cols = {"run": "run", **stage_columns(sizes), "seconds": "time (stage wall; run dir: train)"}
    sections = [Section("Side by side", _table_html(rows, cols, table_id="stage-table"), markdown_table(rows, cols))]
    png = plots.curves_plot(curves)
    if png:
        sections.append(Section("Training curves overlaid", "", "", [Figure("curves", "All runs' curves", png)]))
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the folder: {exc.strerror or exc}") from None
    return _write(out, "compare", "dlopt compare: " + " vs ".join(labels), f"Runs: {', '.join(map(str, runs))}",
                  sections)
