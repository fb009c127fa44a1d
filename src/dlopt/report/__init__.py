"""Reports: pure functions from a pipeline run's ``results.json`` and stage outputs to
tables, plots (matplotlib PNGs) and files.

    from dlopt.report import build_report, compare_runs
    paths = build_report("runs/mnist-pipeline")      # report.html (self-contained), report.md
    compare_runs(["runs/a", "runs/b"], "runs/compare")
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> private module that defines it (imported on first use)
_LAZY = {
    "build_report": "dlopt.report._build",
    "compare_runs": "dlopt.report._build",
    "load_results": "dlopt.report._build",
    "stage_rows": "dlopt.report._tables",
    "text_table": "dlopt.report._tables",
    "markdown_table": "dlopt.report._tables",
    "per_class_rows": "dlopt.report._tables",
    "pareto_front": "dlopt.report._plots",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dlopt.report' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
