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
    (["quantize", "RUN", "--out", "OUT", "--data", "{name: iris"], "is not a YAML mapping"),
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
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accepted"] is False
    # zeroed weights leave the dense files as large: the compressed weights are what shrink
    b, a = summary["compression"]["before"], summary["compression"]["after"]
    assert f"(weights gzip: {b['compressed_bytes']} -> {a['compressed_bytes']} B)" in res.output


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


def test_rejected_prune_says_the_kept_model_misses_the_target(lenet_run, tmp_path):
    """The guard refused the candidate: it printed 'target macs=0.5: NOT met (MACs removed
    50.3%' with the rejected candidate's figures, as if the kept model had fallen short."""
    out = tmp_path / "r"
    res = runner.invoke(app, ["prune", str(lenet_run), "--out", str(out), "--target", "macs=0.5",
                              "--finetune-epochs", "0", "--max-drop-pt", "0", "--no-latency", "--exporter", "legacy"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    c = summary["compression"]
    assert summary["accepted"] is False and not c["target_met"] and c["candidate_target_met"]
    assert (f"target macs=0.5: NOT met by the kept model (the input, unchanged); the rejected candidate reached it "
            f"(MACs removed {c['macs_reduction']:.1%}") in res.output
    assert f"input -> rejected candidate ({out / 'rejected'}): test accuracy" in res.output


def test_quantize_compares_the_fp32_and_int8_onnx_files(mlp_run, tmp_path):
    """'size 656 -> 6494 B' set the FP32 safetensors against the INT8 ONNX file."""
    out = tmp_path / "q"
    res = runner.invoke(app, ["quantize", str(mlp_run), "--out", str(out), "--max-drop-pt", "100", "--no-latency",
                              "--exporter", "legacy"])
    assert res.exit_code == 0, res.output
    c = json.loads((out / "summary.json").read_text())["compression"]
    fp32, int8 = c["before"]["onnx_bytes"], c["after"]["onnx_bytes"]
    assert fp32 == (out / "model.onnx").stat().st_size and int8 == c["after"]["size_bytes"]
    assert f"ONNX size {fp32} -> {int8} B" in res.output
    assert c["onnx_size_reduction"] == round(1 - int8 / fp32, 4) > 0.5


def _custom_onnx(path, dataset: dict):
    """A user's module (4 features in, 3 classes) exported with metadata naming ``dataset``."""
    import torch
    from torch import nn

    from dlopt.deploy import export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.randn(256, 4)
    export_onnx(model, x[:2], path, check_inputs=x, exporter="legacy", metadata={"dataset": dataset})
    return path


def test_quantize_onnx_whose_dataset_does_not_fit_is_one_line_and_data_gives_one(tmp_path):
    """A custom module's file naming MNIST quantized, then failed measuring with ORT's
    'Invalid rank for input' traceback (exit 1)."""
    path = _custom_onnx(tmp_path / "mlp.onnx", {"name": "mnist", "subset": 600, "test_subset": 300})
    out = tmp_path / "q"
    args = ["quantize", str(path), "--out", str(out), "--method", "static", "--no-latency"]
    _one_error_line(runner.invoke(app, args), "takes inputs of shape (4,) but dataset 'mnist' (named by its "
                                              "metadata) gives (1, 28, 28)")
    assert not out.exists()
    res = runner.invoke(app, [*args, "--data", "iris", "--max-drop-pt", "100"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "iris" and summary["compression"]["after"]["test_accuracy"] is not None


def test_quantize_data_option_of_a_run_directory_exit_2(lenet_run, tmp_path):
    _one_error_line(runner.invoke(app, ["quantize", str(lenet_run), "--out", str(tmp_path / "q"), "--data", "iris"]),
                    "--data is for an .onnx source")


def test_binary_quantize_prints_the_packed_size(mlp_run, tmp_path):
    """The dense ONNX files are alike in size: the packed weights in summary.json went unprinted."""
    out = tmp_path / "b"
    res = runner.invoke(app, ["quantize", str(mlp_run), "--out", str(out), "--method", "binary", "--epochs", "1",
                              "--max-drop-pt", "100", "--no-latency", "--exporter", "legacy"])
    assert res.exit_code == 0, res.output
    c = json.loads((out / "summary.json").read_text())["compression"]
    assert f"(weights packed: {c['before']['size_bytes']} -> {c['after']['packed_bytes']} B)" in res.output


def test_distill_baseline_prints_the_student_without_kd(lenet_run, tmp_path):
    """--baseline's student (compression.nokd) was in summary.json only."""
    out = tmp_path / "kd"
    res = runner.invoke(app, ["distill", "--teacher", str(lenet_run), "--student", "mlp:width=16,depth=1",
                              "--out", str(out), "--epochs", "1", "--baseline", "--max-drop-pt", "100",
                              "--no-latency", "--exporter", "legacy"])
    assert res.exit_code == 0, res.output
    nokd = json.loads((out / "summary.json").read_text())["compression"]["nokd"]
    assert f"same student without KD (--baseline): test accuracy {nokd['test_accuracy']:.4f}" in res.output


@pytest.mark.parametrize("verb", [
    ["prune", "RUN", "--method", "global", "--target", "sparsity=0.3"],
    ["distill", "--teacher", "RUN", "--student", "mlp"],
    ["quantize", "RUN"],
])
def test_out_holding_the_input_is_refused_with_overwrite(lenet_run, tmp_path, verb):
    """--out RUN --overwrite emptied the source run first, then failed: the run was lost."""
    import shutil

    run = shutil.copytree(lenet_run, tmp_path / "run")
    for out in (run, tmp_path):  # the run itself, or a folder that holds it
        args = [str(run) if a == "RUN" else a for a in verb] + ["--out", str(out), "--overwrite"]
        _one_error_line(runner.invoke(app, args), "which --overwrite would delete")
        assert (run / "model.safetensors").is_file()


@pytest.mark.parametrize("dataset,needle", [
    ({}, "its metadata names no dataset; allowed: --data NAME"),
    ({"name": "npz:gone.npz"}, "dataset 'npz:gone.npz' named by its metadata cannot be read here"),
])
def test_quantize_onnx_without_readable_data_says_to_pass_data(tmp_path, dataset, needle):
    path = _custom_onnx(tmp_path / "mlp.onnx", dataset)
    _one_error_line(runner.invoke(app, ["quantize", str(path), "--out", str(tmp_path / "q")]), needle)


@pytest.fixture(scope="module")
def custom_run(tmp_path_factory):
    """A run of a user's nn.Module on in-memory arrays (dlopt.fit)."""
    import numpy as np
    from torch import nn

    import dlopt

    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    run = tmp_path_factory.mktemp("custom") / "run"
    dlopt.fit(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), (x, (x[:, 0] > 0).astype(np.int64)),
              epochs=1, run_dir=run, progress=False)
    return run


@pytest.mark.parametrize("args", [
    ["quantize", "CUSTOM"],
    ["prune", "CUSTOM", "--method", "global", "--target", "sparsity=0.5"],
    ["distill", "--teacher", "RUN", "--student", "CUSTOM"],
])
def test_a_custom_module_run_is_refused_with_what_works(custom_run, lenet_run, tmp_path, args):
    """The line said 'pass it as load(..., model=...)', a Python call, to a CLI user."""
    args = [str(custom_run) if a == "CUSTOM" else str(lenet_run) if a == "RUN" else a for a in args]
    _one_error_line(runner.invoke(app, [*args, "--out", str(tmp_path / "o")]), "`dlopt quantize FILE.onnx --data DATA`")
