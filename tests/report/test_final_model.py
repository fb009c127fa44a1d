"""The report's "Final model" section shows the delivered model's figures: for a quantize stage,
the confusion matrix of its INT8 file on ONNX Runtime, not that of the FP32 source."""

from __future__ import annotations

import numpy as np

from dlopt.pipeline import parse_pipeline, run_pipeline


def _int8_matrix(run_dir) -> list[list[int]]:
    from dlopt.data import load_data
    from dlopt.deploy import OnnxModel
    from dlopt.train import load

    test = load_data(load(run_dir).config.data).test
    pred = OnnxModel.load(run_dir / "model.int8.onnx").run(test.x.numpy()).argmax(1)
    m = np.zeros((10, 10), dtype=int)
    np.add.at(m, (test.y.numpy(), pred), 1)
    return m.tolist()


def test_final_model_of_a_quantize_stage_is_the_int8_model(tmp_path):
    from dlopt.report._tables import per_class_rows
    from dlopt.train.rundir import read_json

    stages = [{"name": "train"},
              {"name": "quantize", "input": "train", "method": "static", "calib_samples": 4, "per_channel": False,
               "max_drop_pt": 100}]
    cfg, opts = parse_pipeline({"name": "q", "runs_dir": str(tmp_path), "stages": stages, "base": {
        "data": {"name": "mnist", "subset": 1000, "test_subset": 1000}, "model": {"name": "lenet5", "width": 0.5},
        "train": {"epochs": 2, "batch_size": 64, "progress": False, "seed": 0, "optim": {"name": "adam", "lr": 0.003}}}})
    root = run_pipeline(cfg, opts).root
    md = (root / "report.md").read_text()
    final = md[md.index("## Final model"):]
    assert "stage 'quantize'" in final
    int8 = _int8_matrix(root / "quantize" / "run")
    assert int8 != read_json(root / "train" / "run" / "summary.json")["confusion_matrix"]  # else nothing to tell
    for row in per_class_rows(int8, []):
        assert f"| {row['class']} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} |" in final
