"""Which split the guard judges on, and what an output run's summary describes: never the test
split in the guard's place, the candidate's own figures in its summary, rejected files under
DIR/rejected/, and no ONNX Runtime pre-processing advice on the root logger."""

from __future__ import annotations

import json
import logging

import pytest

from dlopt.compress import Budget, quantize_run
from dlopt.compress.quantize import quantize_onnx


@pytest.fixture(scope="session")
def noval_run(tmp_path_factory):
    """A real 1-epoch MLP run trained without a validation split (val_fraction 0)."""
    import dlopt
    from dlopt.train import recipe_config

    data = {"name": "mnist", "subset": 600, "test_subset": 300, "val_fraction": 0.0}
    cfg = recipe_config(data=data, model={"name": "mlp", "width": 64, "depth": 2}, epochs=1,
                        progress=False, lr=3e-3, batch_size=64)
    run_dir = tmp_path_factory.mktemp("runs") / "noval"
    dlopt.fit(config=cfg, run_dir=run_dir)
    return run_dir


@pytest.fixture(scope="session")
def mlp_onnx(mlp_run, tmp_path_factory):
    from dlopt.deploy import export_run

    return export_run(mlp_run, tmp_path_factory.mktemp("onnx") / "mlp.onnx", exporter="legacy").path


def _rows(split):
    return {tuple(r) for r in split.x.flatten(1).numpy().round(6).tolist()}


def test_without_val_split_the_guard_judges_held_out_training_rows(noval_run):
    from dlopt.compress._rundir import open_source
    from dlopt.data import load_data
    from dlopt.train import load

    raw = load_data(load(noval_run).config.data)
    assert raw.val is None or len(raw.val) == 0
    src = open_source(noval_run)
    assert src.guard_split["split"] == "train-holdout" and src.guard_split["rows"] == len(src.bundle.val) == 60
    assert len(src.bundle.train) + len(src.bundle.val) == len(raw.train)
    guard, train = _rows(src.bundle.val), _rows(src.bundle.train)
    assert guard <= _rows(raw.train) and not guard & train  # from train, kept out of fine-tuning
    assert (src.bundle.test.x == raw.test.x).all()  # test untouched
    again = open_source(noval_run)
    assert (again.bundle.val.y == src.bundle.val.y).all()  # seeded: the same rows every time


def test_measure_reports_no_val_accuracy_rather_than_test(noval_run, fast):
    import dataclasses

    from dlopt.compress import judge
    from dlopt.compress.measure import measure_torch
    from dlopt.data import load_data
    from dlopt.train import load

    loaded = load(noval_run)
    bundle = dataclasses.replace(load_data(loaded.config.data), val=None)
    m = measure_torch(loaded.model, bundle, None, measure=fast)
    assert m["val_accuracy"] is None and m["test_accuracy"] > 0
    assert judge(m, m, Budget())[0] is False  # nothing to judge on: rejected, never judged on test


def test_quantize_run_without_val_records_the_guard_split(noval_run, tmp_path, fast):
    from dlopt.compress._rundir import open_source
    from dlopt.compress.measure import torch_accuracy

    res = quantize_run(noval_run, tmp_path / "q", method="dynamic", budget=Budget(max_drop_pt=100.0), measure=fast)
    guard = res.summary["compression"]["guard_split"]
    assert guard["split"] == "train-holdout" and guard["seed"] == 0 and "test" in guard["note"]
    val = open_source(noval_run).bundle.val
    assert res.before["val_accuracy"] == pytest.approx(torch_accuracy(open_source(noval_run).model, val.x, val.y))
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert summary["val"]["split"] == "train-holdout"


def test_accepted_int8_summary_describes_the_int8_model(lenet_run, tmp_path, fast):
    res = quantize_run(lenet_run, tmp_path / "q", method="static", calib_samples=64,
                       budget=Budget(max_drop_pt=100.0), measure=fast)
    assert res.accepted, res.reason
    summary = json.loads((res.run_dir / "summary.json").read_text())
    after = summary["compression"]["after"]
    assert summary["val"]["accuracy"] == after["val_accuracy"]
    assert summary["test"]["accuracy"] == after["test_accuracy"]
    assert summary["size_bytes"] == after["size_bytes"] == (res.run_dir / "model.int8.onnx").stat().st_size
    assert "loss" not in summary["test"]  # the FP32 source's loss was never measured on INT8


def test_rejected_int8_file_goes_to_rejected_dir(mlp_onnx, tmp_path):
    from dlopt.compress import MeasureSettings

    # a latency budget no file can meet: the guard rejects, deterministically
    timed = MeasureSettings(batch_sizes=(1,), latency_batch=1, min_runs=3, min_seconds=0.0, exporter="legacy")
    res = quantize_run(mlp_onnx, tmp_path / "d", method="dynamic", budget=Budget(latency_ms=1e-6), measure=timed)
    assert "misses the budget" in res.reason
    assert not res.accepted
    assert (res.run_dir / "rejected" / "model.int8.onnx").is_file()
    assert not (res.run_dir / "model.int8.onnx").exists()
    assert not list(res.run_dir.glob("rejected.*"))


def test_dynamic_quantize_drops_only_the_preprocess_advice(mlp_onnx, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        quantize_onnx(mlp_onnx, tmp_path / "m.int8.onnx", method="dynamic")
        logging.warning("an unrelated root warning")
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "pre-processing before quantization" in m]
    assert "an unrelated root warning" in messages  # other root warnings still pass


def _vit_onnx(tmp_path):
    """A tiny ViT (LayerNorm scales: rank-1 weights) exported to ONNX, and inputs for it."""
    import torch

    from dlopt.deploy import export_onnx
    from dlopt.models import create_model

    torch.manual_seed(0)
    model = create_model("vit", input_shape=(1, 8, 8), num_classes=3, width=8, depth=1, heads=2).eval()
    x = torch.rand(16, 1, 8, 8)
    src = export_onnx(model, x[:2], tmp_path / "vit.onnx", metadata={}, check_inputs=x, exporter="legacy",
                      samples=16).path
    return src, x.numpy()


def test_static_quantize_of_layernorm_model_drops_only_the_rank1_fallback_note(tmp_path, caplog):
    """ORT logged 'Axis 1 is out-of-range for weight ... with rank 1' for every LayerNorm scale
    of a ViT (it quantizes those per-tensor): WARNING lines the user could not act on."""
    src, x = _vit_onnx(tmp_path)
    with caplog.at_level(logging.WARNING):
        quantize_onnx(src, tmp_path / "vit.int8.onnx", method="static", calibration=x)
        logging.warning("Axis 1 is out-of-range for weight 'w' with rank 3")  # not a rank-1 fallback
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "with rank 1" in m]
    assert "Axis 1 is out-of-range for weight 'w' with rank 3" in messages
    assert (tmp_path / "vit.int8.onnx").is_file()


def test_deploy_int8_helper_drops_the_same_notes(tmp_path, caplog):
    """``dlopt bench --int8``'s helper had its own filter, without the rank-1 note: one filter
    (in deploy) now serves both."""
    from dlopt.deploy import quantize_static_onnx

    src, x = _vit_onnx(tmp_path)
    with caplog.at_level(logging.WARNING):
        quantize_static_onnx(src, tmp_path / "vit.int8.onnx", x)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "with rank 1" in m or "pre-processing before quantization" in m]
