"""A compressed run's summary.json holds figures of the model it delivers: an untrained step
(INT8, pruning without fine-tuning) copies no training figure of its source as its own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlopt.compress import Budget, prune_run, quantize_run

_SOURCE_ONLY = ("best_epoch", "monitor", "stop_reason")


def _test_split(run_dir):
    from dlopt.data import load_data
    from dlopt.train import load

    return load_data(load(run_dir).config.data).test


def _matrix(pred: np.ndarray, y: np.ndarray, classes: int) -> list[list[int]]:
    m = np.zeros((classes, classes), dtype=int)
    np.add.at(m, (y, pred), 1)
    return m.tolist()


def _check_own_figures(summary: dict, source: dict, pred: np.ndarray, y: np.ndarray) -> None:
    """The matrix is the delivered model's test predictions; training fields are the source's."""
    assert summary["confusion_matrix"] == _matrix(pred, y, len(source["confusion_matrix"]))
    assert np.trace(summary["confusion_matrix"]) / len(y) == pytest.approx(summary["test"]["accuracy"])
    for key in _SOURCE_ONLY:
        assert key not in summary
        assert summary["source_training"][key] == source[key]


def test_int8_summary_has_int8_confusion_matrix(lenet_run, tmp_path, fast):
    from dlopt.deploy import OnnxModel

    res = quantize_run(lenet_run, tmp_path / "q", method="static", calibration="minmax", calib_samples=64,
                       budget=Budget(max_drop_pt=100.0), measure=fast)
    assert res.accepted
    test = _test_split(lenet_run)
    pred = OnnxModel.load(res.run_dir / "model.int8.onnx").run(test.x.numpy()).argmax(1)
    summary = json.loads((res.run_dir / "summary.json").read_text())
    source = json.loads((lenet_run / "summary.json").read_text())
    _check_own_figures(summary, source, pred, test.y.numpy())


def test_untrained_prune_summary_has_pruned_confusion_matrix(lenet_run, tmp_path, fast):
    import torch

    from dlopt.train import load

    res = prune_run(lenet_run, tmp_path / "p", method="local", target="sparsity=0.9", finetune_epochs=0,
                    budget=Budget(max_drop_pt=100.0), measure=fast)
    assert res.accepted
    test = _test_split(lenet_run)
    with torch.inference_mode():
        pred = load(res.run_dir).model.eval()(test.x).argmax(1).numpy()
    summary = json.loads((res.run_dir / "summary.json").read_text())
    source = json.loads((lenet_run / "summary.json").read_text())
    _check_own_figures(summary, source, pred, test.y.numpy())
