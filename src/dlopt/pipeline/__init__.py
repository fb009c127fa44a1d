"""One pipeline, one report: named stages from data to a deployable model, cached and
resumable stage by stage.

    from dlopt.pipeline import load_pipeline, run_pipeline
    cfg, options = load_pipeline("examples/mnist-pipeline.yaml")   # validates everything
    result = run_pipeline(cfg, options)                             # runs/<name>/...
    result.report["html"]

Stage types live in one registry (``STAGES``): ``train``, ``lr_find``, ``tune``,
``retrain``, ``sweep`` (dlopt.train / dlopt.tune), ``prune``, ``distill``, ``quantize``
(dlopt.compress), ``export``, ``bench``, ``serve_check`` (dlopt.deploy).
"""

from __future__ import annotations

from dlopt._lazy import lazy_exports

# public name -> private module that defines it (imported on first use)
_LAZY = {
    "PipelineConfig": "dlopt.pipeline._schema",
    "StageSpec": "dlopt.pipeline._schema",
    "load_pipeline": "dlopt.pipeline._schema",
    "parse_pipeline": "dlopt.pipeline._schema",
    "stage_order": "dlopt.pipeline._schema",
    "STAGES": "dlopt.pipeline._stages",
    "StageContext": "dlopt.pipeline._context",
    "StageOutput": "dlopt.pipeline._context",
    "StageRecord": "dlopt.pipeline._context",
    "run_pipeline": "dlopt.pipeline._runner",
    "PipelineResult": "dlopt.pipeline._runner",
    "stage_key": "dlopt.pipeline._runner",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
