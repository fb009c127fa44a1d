"""The safe ONNX loader: external-data path attacks are refused naming the file; good
external data, raw prediction and bad files behave."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import convert_model_to_external_data

from dlopt.deploy import OnnxModel, predict_onnx
from dlopt.deploy._runtime import postprocess
from dlopt.errors import DataError, ModelError

W = np.arange(12, dtype=np.float32).reshape(4, 3)


def _matmul_model(*, weight_in_constant: bool = False) -> onnx.ModelProto:
    """y = x @ W with W an initializer (or a Constant node's attribute tensor)."""
    w = numpy_helper.from_array(W, "W")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"])]
    inits = [w]
    if weight_in_constant:
        nodes.insert(0, helper.make_node("Constant", [], ["W"], value=w))
        inits = []
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _save_external(model: onnx.ModelProto, folder: Path, location: str = "w.bin") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    # convert_attribute: Constant-node tensors go to the side file too
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location=location,
                                   size_threshold=0, convert_attribute=True)
    onnx.save_model(model, str(path))
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute]
    assert tensors and all(t.data_location == TensorProto.EXTERNAL for t in tensors if t.name == "W")
    return path


def _relocate(path: Path, location: str) -> None:
    """Point every external tensor of ``path`` at ``location`` (what an attacker would do)."""
    proto = onnx.load(str(path), load_external_data=False)
    tensors = list(proto.graph.initializer) + [a.t for n in proto.graph.node for a in n.attribute if a.HasField("t")]
    for t in tensors:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(proto.SerializeToString())


def test_external_data_inside_the_folder_loads(tmp_path):
    path = _save_external(_matmul_model(), tmp_path / "m")
    runner = OnnxModel.load(path)
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(runner.run(x), x @ W)


@pytest.mark.parametrize("constant", [False, True], ids=["initializer", "constant-attribute"])
@pytest.mark.parametrize("attack", ["parent", "absolute", "symlink", "dotdot-inside", "ort-mem", "missing"])
def test_external_data_attacks_are_refused(attack, constant, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(W.tobytes())
    folder = tmp_path / "m"
    path = _save_external(_matmul_model(weight_in_constant=constant), folder)
    location = {
        "parent": "../secret.bin",
        "absolute": str(secret),
        "symlink": "link.bin",
        "dotdot-inside": "sub/../w.bin",
        "ort-mem": "*/_ORT_MEM_ADDR_/*",
        "missing": "nothing.bin",
    }[attack]
    if attack == "symlink":
        os.symlink(secret, folder / "link.bin")
    _relocate(path, location)
    with pytest.raises(ModelError) as err:
        OnnxModel.load(path)
    msg = str(err.value)
    assert str(path) in msg and "'W'" in msg and repr(location) in msg


def test_garbage_and_missing_files_are_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not an onnx file at all")
    with pytest.raises(ModelError, match="bad.onnx"):
        OnnxModel.load(bad)
    with pytest.raises(ModelError, match="not found"):
        OnnxModel.load(tmp_path / "none.onnx")
    with pytest.raises(ModelError, match="not found"):
        OnnxModel.load(tmp_path)  # a folder is not a model file


def test_plain_onnx_without_dlopt_metadata_gets_shapes_from_the_graph(tmp_path):
    path = tmp_path / "plain.onnx"
    onnx.save_model(_matmul_model(), str(path))
    runner = OnnxModel.load(path)
    assert runner.input_shape == (4,) and runner.metadata.preprocess is None
    pred, proba = predict_onnx(path, np.eye(4, dtype=np.float32))
    np.testing.assert_array_equal(pred, (np.eye(4) @ W).argmax(1))
    assert proba.shape == (4, 3)


def test_predict_raw_checks_shapes(lenet_model, mnist_raw):
    pred_one, _ = lenet_model.predict_raw(mnist_raw[0])  # one sample without a batch axis
    pred_all, _ = lenet_model.predict_raw(mnist_raw[:3])
    assert pred_one.tolist() == pred_all[:1].tolist()
    # rows of 784 values, or (N, 28, 28): each row one sample, as `dlopt predict RUN` takes them
    for layout in (mnist_raw[:3].reshape(3, 784), mnist_raw[:3].reshape(3, 28, 28)):
        assert lenet_model.predict_raw(layout)[0].tolist() == pred_all.tolist()
    with pytest.raises(DataError, match=r"allowed: \(N, 1, 28, 28\) or N rows of 784 values"):
        lenet_model.predict_raw(np.zeros((2, 27, 27)))


def test_postprocess_regression_and_classification():
    pred, proba = postprocess(np.array([[1.0, 3.0], [2.0, 0.0]]), "classification")
    assert pred.tolist() == [1, 0]
    np.testing.assert_allclose(proba.sum(1), 1.0)
    values, none = postprocess(np.array([[0.5], [-1.0]]), "regression")
    assert values.tolist() == [0.5, -1.0] and none is None
