"""The sweep stage: variants x seeds, mean ± std per variant, curves in the report."""

from __future__ import annotations

import json
import statistics

from dlopt.pipeline import parse_pipeline, run_pipeline


def test_sweep_variants_by_seeds(tmp_path):
    doc = {
        "name": "sweep", "runs_dir": str(tmp_path / "runs"),
        "base": {"data": {"name": "mnist", "subset": 400, "test_subset": 100},
                 "model": {"name": "mlp", "width": 16, "depth": 1},
                 "train": {"epochs": 2, "batch_size": 64, "progress": False}},
        "stages": [{"name": "opt", "type": "sweep", "seeds": [0, 1],
                    "variants": {"sgd": {"train": {"optim": {"name": "sgd", "lr": 0.1}}},
                                 "adam": {"train": {"optim": {"name": "adam", "lr": 0.01}}}}}],
    }
    cfg, opts = parse_pipeline(doc)
    result = run_pipeline(cfg, opts)
    m = result.records[0].metrics
    assert list(m["variants"]) == ["sgd", "adam"]
    for label, v in m["variants"].items():
        accs = [json.loads((result.root / "opt" / label / f"seed-{s}" / "summary.json").read_text())["test"]["accuracy"]
                for s in (0, 1)]
        assert v["values"] == accs
        assert abs(v["mean"] - statistics.fmean(accs)) < 1e-12 and abs(v["std"] - statistics.stdev(accs)) < 1e-12
    t = result.records[0].timings
    assert t["adam"]["seconds_mean"] > 0
    md = result.report["md"].read_text()
    assert "Comparison: opt" in md and "| sgd |" in md and "±" in md
    assert (result.report["files"] / "sweep-opt.png").stat().st_size > 1000
