"""The bench's quality figure: r2 for a regression model and accuracy for a single-logit (bce)
classifier, as training scores them on the same test rows; ``--samples N`` measures a seeded
stratified sample of the test split, not its first N rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import dlopt
from dlopt.cli import app
from dlopt.data import load_data
from dlopt.deploy import export_onnx, run_metadata, sample_rows
from dlopt.train import load

runner = CliRunner()
FAST = ["--batch-sizes", "1", "--min-runs", "3", "--min-seconds", "0.01"]


def _bench_json(onnx, tmp_path, *extra: str) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", str(onnx), *FAST, *extra, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text()), res.stdout


def _fit_and_export(tmp_path, model, data: str, **recipe) -> tuple[dict, object]:
    """(the run's test figures, its ONNX export with the run's metadata: dataset included)."""
    run = tmp_path / "run"
    res = dlopt.fit(model, data, run_dir=run, epochs=2, batch_size=32, progress=False, threads=1, **recipe)
    loaded = load(run, model=res.model if isinstance(model, nn.Module) else None)
    onnx = tmp_path / "model.onnx"
    test_x = load_data(loaded.config.data).test.x
    export_onnx(loaded.model, test_x[:2], onnx, metadata=run_metadata(loaded), check_inputs=test_x)
    return json.loads((run / "summary.json").read_text())["test"], onnx


def test_bench_of_a_regression_model_reports_its_test_r2(tmp_path):
    test, onnx = _fit_and_export(tmp_path, {"name": "mlp", "width": 16, "depth": 1}, "diabetes")
    report, table = _bench_json(onnx, tmp_path)
    entry = report["contestants"]["onnxruntime"]["1"]
    assert entry["accuracy"] is None
    assert entry["r2"] == pytest.approx(test["r2"], abs=1e-4)
    assert " r2 " in table and f"{entry['r2']:.4f}" in table


def test_bench_of_a_single_logit_classifier_reports_its_test_accuracy(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 8), nn.ReLU(), nn.Linear(8, 1))
    test, onnx = _fit_and_export(tmp_path, model, "breast-cancer", loss="bce", lr=3e-3)
    assert 0.6 < test["accuracy"] < 1  # a model that tells the classes apart, not one constant answer
    report, _ = _bench_json(onnx, tmp_path)
    entry = report["contestants"]["onnxruntime"]["1"]
    assert entry["accuracy"] == pytest.approx(test["accuracy"], abs=1e-6) and entry["r2"] is None


def _sorted_test_npz(tmp_path) -> str:
    """Classes 0 and 1 far apart on the first feature, class 2 between them and as wide: the
    model gets class 0 right more often than the rest. The test rows are sorted by class, as
    some files come: the first ones are all class 0."""
    rng = np.random.default_rng(0)

    def rows(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 3
        x = rng.normal(size=(n, 4)).astype(np.float32)
        x[y < 2, 0] = np.where(y[y < 2] == 0, -2.0, 2.0) + 0.3 * x[y < 2, 0]
        return x, y

    (x, y), (xt, yt) = rows(600), rows(300)
    order = np.argsort(yt, kind="stable")
    path = tmp_path / "sorted.npz"
    np.savez(path, x=x, y=y, x_test=xt[order], y_test=yt[order])
    return f"npz:{path}"


def test_bench_samples_are_a_seeded_stratified_sample_of_the_test_split(tmp_path):
    _, onnx = _fit_and_export(tmp_path, {"name": "mlp", "width": 16, "depth": 1}, _sorted_test_npz(tmp_path),
                              lr=1e-2)
    run = load(tmp_path / "run")
    test = load_data(run.config.data).test
    x, y = test.x.numpy(), test.y.numpy()
    kept, ys = sample_rows(np.arange(len(y)), y, 60)
    assert np.array_equal(np.bincount(ys, minlength=3), [20, 20, 20])  # the split's shares: 100 rows per class
    np.testing.assert_array_equal(sample_rows(np.arange(len(y)), y, 60)[0], kept)  # seeded: the same rows each time
    assert sample_rows(x, y, None)[0] is x and sample_rows(x, y, 10_000)[0] is x

    with torch.inference_mode():
        right = run.model.eval()(torch.from_numpy(x)).argmax(1).numpy() == y
    assert right[:60].mean() > right[kept].mean() + 0.1  # the first 60 rows would score otherwise
    report, _ = _bench_json(onnx, tmp_path, "--samples", "60")
    assert report["settings"]["samples"] == 60
    assert report["contestants"]["onnxruntime"]["1"]["accuracy"] == pytest.approx(right[kept].mean())
