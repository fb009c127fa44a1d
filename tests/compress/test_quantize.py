"""Quantization on real runs with real ONNX Runtime: static/dynamic INT8, QAT/PACT, low-bit."""

from __future__ import annotations

import json
from pathlib import Path

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
    # the learned clips are constants of the INT8 graph, not parameters (was +1 per ReLU)
    assert res.after["params"] == res.before["params"]


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
                                           ({"calib_samples": 0}, "--calib-samples"),
                                           ({"conv_kernel": "amx"}, "allowed: auto, direct, gemm")])
def test_bad_arguments(lenet_run, tmp_path, kwargs, needle):
    with pytest.raises(ConfigError) as err:
        quantize_run(lenet_run, tmp_path / "x", **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


def _zero_points(path):
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {t.name: t for t in proto.graph.initializer}
    return [numpy_helper.to_array(inits[n.input[2]]) for n in proto.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits
            and inits[n.input[0]].data_type == onnx.TensorProto.INT8]


@pytest.fixture(scope="module")
def lenet_int8(lenet_run, tmp_path_factory):
    """The LeNet run's FP32 export and its static INT8 copy (symmetric weights), plus test inputs."""
    from dlopt.data import load_data
    from dlopt.deploy import export_run, quantize_static_onnx
    from dlopt.train import load

    tmp = tmp_path_factory.mktemp("int8")
    bundle = load_data(load(lenet_run).config.data)
    fp32 = export_run(lenet_run, tmp / "lenet.onnx", exporter="legacy").path
    int8 = quantize_static_onnx(fp32, tmp / "lenet.int8.onnx", bundle.train.x[:128].numpy(), activation="uint8")
    return int8, bundle.test.x[:256].numpy()


def test_shifted_weight_zero_points_give_identical_outputs(lenet_int8, tmp_path):
    from dlopt.deploy import OnnxModel, shift_weight_zero_points

    int8, x = lenet_int8
    assert all(not z.any() for z in _zero_points(int8))  # quantized symmetric
    moved = shift_weight_zero_points(int8, tmp_path / "gemm.onnx")
    zps = _zero_points(tmp_path / "gemm.onnx")
    assert moved == len(zps) >= 4 and all(z.all() for z in zps)  # every int8 weight moved off 0
    np.testing.assert_array_equal(OnnxModel.load(tmp_path / "gemm.onnx").run(x), OnnxModel.load(int8).run(x))


@pytest.mark.parametrize("kernel", ["auto", "direct", "gemm"])
def test_pick_conv_kernel_keeps_outputs_and_reports_its_choice(lenet_int8, tmp_path, kernel):
    import shutil

    from dlopt.compress import pick_conv_kernel
    from dlopt.deploy import OnnxModel

    src, x = lenet_int8
    int8 = Path(shutil.copy2(src, tmp_path / "model.int8.onnx"))
    choice = pick_conv_kernel(int8, x, conv_kernel=kernel, batch=16, rounds=1)
    times = choice["p50_ms"]
    if kernel == "auto":
        assert set(times) == {"direct", "gemm"} and choice["conv_kernel"] == min(times, key=times.get)
    else:
        assert choice["conv_kernel"] == kernel and times == {}
    shifted = all(z.all() for z in _zero_points(int8))
    assert shifted == (choice["conv_kernel"] == "gemm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8.onnx"]  # no twin left behind
    np.testing.assert_array_equal(OnnxModel.load(int8).run(x), OnnxModel.load(src).run(x))


def test_quantize_run_records_the_conv_kernel(lenet_run, tmp_path, fast):
    res = quantize_run(lenet_run, tmp_path / "q", method="static", calib_samples=64, conv_kernel="gemm",
                       budget=Budget(max_drop_pt=5.0), measure=fast)
    c = res.summary["compression"]
    assert c["options"]["conv_kernel"] == "gemm" and c["conv_kernel"] == "gemm"
    assert all(z.all() for z in _zero_points(_int8_path(res)))


def test_lowbit_refuses_a_model_with_nothing_to_quantize(gru_run, tmp_path, fast):
    """A GRU's only linear layer is its head (kept fp32): 'binary' trained and reported an
    unchanged fp32 model (max_levels_per_channel 0) as accepted."""
    out = tmp_path / "b"
    with pytest.raises(ModelError) as err:
        quantize_run(gru_run, out, method="binary", measure=fast)
    assert "nothing would be quantized" in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()  # refused before any work: the OUT it made is removed


def test_calib_samples_records_the_rows_used(mlp_run, tmp_path, fast):
    """A training split smaller than --calib-samples: the summary said 100000 samples."""
    from dlopt.compress._rundir import open_source

    res = quantize_run(mlp_run, tmp_path / "c", method="static", calib_samples=100_000,
                       budget=Budget(max_drop_pt=1e6), measure=fast)
    assert res.summary["compression"]["options"]["calib_samples"] == len(open_source(mlp_run).bundle.train)
