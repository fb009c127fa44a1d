"""serve_check on a dynamically quantized model compares each served row with local ONNX
Runtime on that row alone: DynamicQuantizeLinear takes its ranges from the whole batch."""

from __future__ import annotations

from dlopt.pipeline import parse_pipeline, run_pipeline


def test_serve_check_passes_on_a_dynamic_int8_model(tmp_path):
    doc = {"name": "dyn", "runs_dir": str(tmp_path / "runs"),
           "base": {"data": {"name": "mnist", "subset": 300, "test_subset": 40},
                    "model": {"name": "mlp", "width": 32, "depth": 2},
                    "train": {"epochs": 1, "batch_size": 32, "progress": False, "seed": 0}},
           "stages": [{"name": "train"},
                      {"name": "quantize", "input": "train", "method": "dynamic", "max_drop_pt": 100},
                      {"name": "serve_check", "input": "quantize", "samples": 40}]}
    result = run_pipeline(*parse_pipeline(doc), report=False)
    check = result.records[-1].metrics
    assert check["passed"] and check["equal"] == check["samples"] == 40
