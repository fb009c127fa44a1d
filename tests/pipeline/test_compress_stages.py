"""prune, distill and quantize stages call dlopt.compress and record its guard decision."""

from __future__ import annotations

from dlopt.pipeline import parse_pipeline, run_pipeline


def test_compress_stages_on_a_tiny_run(tmp_path):
    doc = {
        "name": "comp", "runs_dir": str(tmp_path / "runs"),
        "base": {"data": {"name": "mnist", "subset": 400, "test_subset": 100},
                 "model": {"name": "mlp", "width": 32, "depth": 1},
                 "train": {"epochs": 1, "batch_size": 64, "progress": False, "optim": {"name": "adam", "lr": 0.01}}},
        "stages": [
            {"name": "train"},
            {"name": "prune", "input": "train", "target": "macs=0.5", "finetune_epochs": 1, "max_drop_pt": 100},
            {"name": "distill", "input": "train", "student": {"name": "mlp", "width": 8, "depth": 1},
             "epochs": 1, "max_drop_pt": 100},
            {"name": "quantize", "input": "train", "method": "dynamic", "calib_samples": 32, "max_drop_pt": 100},
        ],
    }
    cfg, opts = parse_pipeline(doc)
    result = run_pipeline(cfg, opts, report=False)
    rec = {r.name: r for r in result.records}
    for name in ("prune", "distill", "quantize"):
        m = rec[name].metrics
        assert m["accepted"] is True, m.get("reason")
        assert 0.0 <= m["accuracy"] <= 1.0 and m["params"] > 0
        assert (rec[name].dir / "run" / "summary.json").exists()
    assert rec["prune"].metrics["macs"] < rec["train"].metrics["macs"]
    assert rec["distill"].metrics["params"] < rec["train"].metrics["params"]
    assert rec["quantize"].path("onnx").name == "model.int8.onnx"
