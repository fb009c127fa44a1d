"""Quantization on real runs with real ONNX Runtime: static/dynamic INT8, QAT/PACT, low-bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlopt.compress import Budget, quantize_run
from dlopt.errors import ConfigError, ModelError


def _int8_path(res):
    name = "model.int8.onnx"
    return res.run_dir / name if res.accepted else res.run_dir / "rejected" / name


def _reloaded_accuracy(path, run_dir):
    """Reload the INT8 file from disk and score it on the run's test split."""
    from dlopt.data import load_data
    from dlopt.deploy import OnnxModel
    from dlopt.train import load

    test = load_data(load(run_dir).config.data).test
    out = OnnxModel.load(path).run(test.x.numpy())
    return float((out.argmax(1) == test.y.numpy()).mean())


def test_static_int8_reloads_and_matches_saved_accuracy(lenet_run, tmp_path, fast):
    res = quantize_run(lenet_run, tmp_path / "q", method="static", calibration="minmax", calib_samples=128,
                       budget=Budget(max_drop_pt=2.0), measure=fast)
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert "accepted" in summary and summary["reason"] == res.reason
    assert res.after["size_bytes"] < 0.6 * res.before["onnx_bytes"]  # int8 weights
    assert abs(res.after["test_accuracy"] - res.before["test_accuracy"]) < 0.03
    assert _reloaded_accuracy(_int8_path(res), lenet_run) == pytest.approx(res.after["test_accuracy"])


def test_dynamic_int8_on_mlp_onnx_file(mlp_run, tmp_path, fast):
    from dlopt.deploy import export_run

    onnx = export_run(mlp_run, tmp_path / "mlp.onnx", exporter="legacy").path
    res = quantize_run(onnx, tmp_path / "d", method="auto", budget=Budget(max_drop_pt=2.0), measure=fast)
    assert res.summary["compression"]["method"] == "auto"
    assert res.accepted, res.reason
    assert (res.run_dir / "model.int8.onnx").stat().st_size < 0.5 * onnx.stat().st_size
    import onnx as onnx_lib

    ops = {n.op_type for n in onnx_lib.load(str(res.run_dir / "model.int8.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops  # auto chose dynamic: no conv


def test_qat_pact_exports_int8(lenet_run, tmp_path, fast):
    res = quantize_run(lenet_run, tmp_path / "qat", method="qat", epochs=1, lr=1e-4, calib_samples=128,
                       budget=Budget(max_drop_pt=5.0), measure=fast)
    base = res.run_dir if res.accepted else res.run_dir / "rejected"
    alphas = json.loads((base / "qat.json").read_text())["pact_alpha"]
    assert alphas and all(a > 0 for a in alphas.values())
    assert (base / "model.int8.onnx").is_file()
    assert abs(res.after["test_accuracy"] - res.before["test_accuracy"]) < 0.05


@pytest.mark.parametrize("method,levels", [("binary", 2), ("ternary", 3)])
def test_lowbit_weights_have_few_levels(mlp_run, tmp_path, fast, method, levels):
    res = quantize_run(mlp_run, tmp_path / method, method=method, epochs=1, lr=1e-3, measure=fast)
    c = res.summary["compression"]
    assert c["bits"] == {"binary": 1, "ternary": 2}[method]
    assert 1 <= c["max_levels_per_channel"] <= levels
    # first and last layers stay fp32 (most of this small MLP): only the 64x64 middle layer packs
    from dlopt.train import load

    model = load(res.run_dir if res.accepted else res.run_dir / "rejected").model
    dense = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert res.after["packed_bytes"] == dense - 64 * 64 * 4 + (64 * 64 * c["bits"] + 7) // 8 + 4 * 64
    assert 0.0 <= res.after["test_accuracy"] <= 1.0


def _custom_op_model(path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Twice", ["x"], ["y"], domain="dlopt.test")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("dlopt.test", 1)])
    onnx.save(model, str(path))
    return path


def test_unsupported_ops_are_refused_in_one_line(tmp_path):
    from dlopt.compress.quantize import check_quantizable

    with pytest.raises(ModelError) as err:
        check_quantizable(_custom_op_model(tmp_path / "custom.onnx"))
    assert "dlopt.test.Twice" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs,needle", [({"method": "int3"}, "valid: auto, binary, dynamic"),
                                           ({"calibration": "magic"}, "minmax"),
                                           ({"calib_samples": 0}, "--calib-samples")])
def test_bad_arguments(lenet_run, tmp_path, kwargs, needle):
    with pytest.raises(ConfigError) as err:
        quantize_run(lenet_run, tmp_path / "x", **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)
