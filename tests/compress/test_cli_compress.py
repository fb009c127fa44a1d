"""The prune / distill / quantize verbs: one-line errors (exit 2), a rejected step exits 0."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dlopt.cli import app

runner = CliRunner()


def _one_error_line(res, needle):
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.output


@pytest.mark.parametrize("args,needle", [
    (["prune", "RUN", "--out", "OUT", "--target", "sparsity=1.5"], "(0, 1)"),
    (["prune", "RUN", "--out", "OUT", "--method", "magic"], "unknown pruning method 'magic'"),
    (["prune", "RUN", "--out", "OUT", "--lr", "-1"], "--lr=-1.0 is invalid"),
    (["quantize", "RUN", "--out", "OUT", "--method", "int3"], "unknown quantization method 'int3'"),
    (["quantize", "RUN", "--out", "OUT", "--conv-kernel", "amx"], "--conv-kernel 'amx' is invalid"),
    (["distill", "--teacher", "RUN", "--student", "lenet5:width", "--out", "OUT"], "key=value"),
])
def test_bad_arguments_exit_2(lenet_run, tmp_path, args, needle):
    args = [str(lenet_run) if a == "RUN" else str(tmp_path / "o") if a == "OUT" else a for a in args]
    _one_error_line(runner.invoke(app, args), needle)


def test_quantize_unsupported_ops_exit_2(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Twice", ["x"], ["y"], domain="dlopt.test")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    path = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                       helper.make_opsetid("dlopt.test", 1)]), str(path))
    _one_error_line(runner.invoke(app, ["quantize", str(path), "--out", str(tmp_path / "q")]), "not supported")


def test_quantize_a_corrupt_onnx_file_exit_2(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07garbage-not-protobuf\xff\xff")
    _one_error_line(runner.invoke(app, ["quantize", str(path), "--out", str(tmp_path / "q")]),
                    "is not a valid ONNX file")
    assert not (tmp_path / "q").exists()


def test_rejected_prune_exits_0_with_accepted_false(lenet_run, tmp_path):
    out = tmp_path / "p"
    res = runner.invoke(app, ["prune", str(lenet_run), "--out", str(out), "--method", "local",
                              "--target", "sparsity=0.98", "--finetune-epochs", "0", "--no-latency",
                              "--exporter", "legacy"])
    assert res.exit_code == 0, res.output
    assert "NOT accepted" in res.output
    assert json.loads((out / "summary.json").read_text())["accepted"] is False
