"""``dlopt bench`` on a quantize output run times the file the run delivers too: its
``model.int8.onnx`` is a contestant without ``--int8``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = {"name": "mnist", "subset": 600, "test_subset": 300}


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory) -> Path:
    """A real one-epoch LeNet-5 run and its accepted static INT8 quantization (accuracy guard only)."""
    import dlopt
    from dlopt.compress import Budget, MeasureSettings, quantize_run
    from dlopt.train import recipe_config

    tmp = tmp_path_factory.mktemp("figures-bench")
    cfg = recipe_config(data=dict(DATA), model={"name": "lenet5"}, epochs=1, progress=False, lr=3e-3)
    dlopt.fit(config=cfg, run_dir=tmp / "run")
    res = quantize_run(tmp / "run", tmp / "q", method="static", calib_samples=64, conv_kernel="direct",
                       budget=Budget(max_drop_pt=100.0), measure=MeasureSettings(latency=False, exporter="legacy"))
    assert res.accepted, res.reason
    return res.run_dir


def test_bench_of_a_quantized_run_includes_its_int8_file(int8_run):
    from dlopt.deploy import bench_run

    rep = bench_run(int8_run, batch_sizes=(1,), min_runs=3, min_seconds=0.01, exporter="legacy")
    assert list(rep["contestants"]) == ["pytorch", "onnxruntime", "onnxruntime-int8"]
    row = rep["contestants"]["onnxruntime-int8"]["1"]
    assert row["size_bytes"] == (int8_run / "model.int8.onnx").stat().st_size
    assert row["accuracy"] == json.loads((int8_run / "summary.json").read_text())["test"]["accuracy"]


def test_bench_table_prints_sizes_in_binary_units(int8_run):
    """The same KiB as ``dlopt export`` prints for the file, not decimal KB."""
    from rich.console import Console

    from dlopt.deploy import bench_run, bench_table

    rep = bench_run(int8_run, onnx=int8_run / "model.onnx", batch_sizes=(1,), min_runs=3, min_seconds=0.01)
    console = Console(record=True, width=250)
    console.print(bench_table(rep))
    text = console.export_text()
    for f in ("model.onnx", "model.int8.onnx"):
        assert f"{(int8_run / f).stat().st_size / 1024:.1f} KiB" in text
