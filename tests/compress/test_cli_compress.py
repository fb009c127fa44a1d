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
    (["quantize", "RUN", "--out", "OUT", "--method", "qat", "--lr", "0"], "--lr=0.0 is invalid"),
    (["distill", "--teacher", "RUN", "--student", "lenet5:width", "--out", "OUT"], "key=value"),
    # a latency budget or target that nothing would time: was a full run, then always rejected
    (["prune", "RUN", "--out", "OUT", "--target", "latency_ms=0.5", "--no-latency"], "drop --no-latency"),
    (["quantize", "RUN", "--out", "OUT", "--latency-ms", "2", "--no-latency"], "drop --no-latency"),
    (["distill", "--teacher", "RUN", "--student", "lenet5", "--out", "OUT", "--latency-ms", "2", "--no-latency"],
     "drop --no-latency"),
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


def test_prune_says_when_the_target_is_not_reached(lenet_run, tmp_path):
    """LeNet's conv widths (6, 16) rounded to 8 cannot lose 90 % of the MACs: the run was
    'accepted' with target_met false in summary.json only."""
    out = tmp_path / "t"
    res = runner.invoke(app, ["prune", str(lenet_run), "--out", str(out), "--target", "macs=0.9",
                              "--finetune-epochs", "0", "--max-drop-pt", "100", "--no-latency",
                              "--exporter", "legacy"])
    assert res.exit_code == 0, res.output
    c = json.loads((out / "summary.json").read_text())["compression"]
    assert not c["target_met"] and c["macs_reduction"] < 0.9
    assert f"target macs=0.9: NOT met (MACs removed {c['macs_reduction']:.1%}" in res.output
