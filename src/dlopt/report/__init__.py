"""Reports: pure functions from a pipeline run's ``results.json`` and stage outputs to
tables, plots (matplotlib PNGs) and files.

    from dlopt.report import build_report, compare_runs
    paths = build_report("runs/mnist-pipeline")      # report.html (self-contained), report.md
    compare_runs(["runs/a", "runs/b"], "runs/compare")
"""

from __future__ import annotations

from dlopt._lazy import lazy_exports

# public name -> private module that defines it (imported on first use)
_LAZY = {
    "build_report": "dlopt.report._build",
    "compare_runs": "dlopt.report._build",
    "load_results": "dlopt.report._build",
    "stage_text": "dlopt.report._build",
    "stage_rows": "dlopt.report._tables",
    "stage_columns": "dlopt.report._tables",
    "latency_sizes": "dlopt.report._tables",
    "text_table": "dlopt.report._tables",
    "markdown_table": "dlopt.report._tables",
    "per_class_rows": "dlopt.report._tables",
    "pareto_front": "dlopt.report._plots",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
