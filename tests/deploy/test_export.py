"""ONNX export: parity for every zoo model, refusals (unsupported op, parity failure),
metadata, exporters, and the run-directory form."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from dlopt.deploy import ModelMetadata, OnnxModel, ParityError, check_external_data, export_onnx, predict_onnx
from dlopt.errors import ModelError
from dlopt.models import create_model, list_models, model_entry


@torch.library.custom_op("dlopt_test::twice", mutates_args=())
def _twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_twice.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class _CustomOpNet(nn.Module):
    """A linear layer behind a custom op that no exporter knows."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.ops.dlopt_test.twice(x))


def _thrice(x):
    # a deliberately wrong ONNX translation of dlopt_test::twice: ORT will compute x * 3
    from onnxscript import opset18 as op

    return op.Mul(x, op.Constant(value_float=3.0))


# small variants (same layer types, fewer/narrower layers, short sequences): the dynamo
# exporter's time grows with the graph and the sequence length; ~5 s per model is fixed cost
_SMALL = {
    "cnn1d": ((40,), {"depth": 1, "width": 16}),
    "convnet": ((1, 28, 28), {"width": 0.25}),
    "gru": ((10,), {"width": 16}),
    "lstm": ((10,), {"width": 16}),
    "mlp": ((1, 28, 28), {"width": 32}),
    "msresnet": ((1, 16, 16), {"depth": 1, "width": 0.25}),
    "resnet": ((1, 16, 16), {"width": 0.25}),
    "vit": ((1, 16, 16), {"depth": 1, "width": 16, "heads": 2}),
}


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_exports_with_parity(name, tmp_path):
    shape, options = _SMALL.get(name, (model_entry(name).info["default_input"], {}))
    torch.manual_seed(0)
    model = create_model(name, input_shape=shape, num_classes=10, **options)
    path = tmp_path / f"{name}.onnx"
    rep = export_onnx(model, torch.randn(4, *shape), path, metadata={"class_names": list("abcdefghij")})

    assert rep.max_abs_diff <= 1e-4 and rep.top1_agreement >= 0.995 and rep.samples >= 256
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # one file, no .data, no temp
    proto = onnx.load(str(path), load_external_data=False)
    assert check_external_data(proto, path) == []
    runner = OnnxModel.load(path)
    for batch in (1, 3):  # the batch axis is dynamic
        x = torch.randn(batch, *shape)
        with torch.inference_mode():
            ref = model.eval()(x).numpy()
        np.testing.assert_allclose(runner.run(x.numpy()), ref, atol=1e-4)


def test_metadata_embedded_and_raw_prediction(lenet, lenet_model, mnist, mnist_raw):
    model, path = lenet
    meta = lenet_model.metadata
    assert meta.class_names == mnist.info.class_names
    assert meta.input_shape == (1, 28, 28) and meta.raw_shape == (1, 28, 28)
    assert meta.source_run == "tests" and meta.dlopt_version and meta.exporter == "dynamo"
    assert meta.params == sum(p.numel() for p in model.parameters()) and meta.macs > 0
    assert meta.parity["samples"] >= 256 and meta.parity["max_abs_diff"] <= 1e-4
    assert [op["op"] for op in meta.preprocess["ops"]] == ["scale"]
    props = {p.key for p in onnx.load(str(path)).metadata_props}
    assert {"dlopt.class_names", "dlopt.preprocess", "dlopt.dlopt_version", "dlopt.source_run"} <= props

    pred, proba = predict_onnx(path, mnist_raw[:20])  # raw uint8: the saved /255 is applied
    with torch.inference_mode():
        ref = torch.softmax(model(mnist.test.x[:20]), 1).numpy()
    np.testing.assert_array_equal(pred, ref.argmax(1))
    np.testing.assert_allclose(proba, ref, atol=1e-5)


def test_metadata_round_trip_keeps_arrays():
    state = {"version": 1, "raw_shape": [3], "ops": [{"op": "zscore"}],
             "arrays": {"0.mean_": np.array([1.5, -2.0, 3.25]), "1.names": np.array(["a", "bc"])}}
    meta = ModelMetadata.from_user({"preprocess": state, "task": "regression"}, input_shape=(3,))
    back = ModelMetadata.from_props(meta.to_props())
    assert back.task == "regression" and back.raw_shape == (3,)
    np.testing.assert_array_equal(back.preprocess["arrays"]["0.mean_"], state["arrays"]["0.mean_"])
    np.testing.assert_array_equal(back.preprocess["arrays"]["1.names"], state["arrays"]["1.names"])


def test_unknown_metadata_key_is_refused(tmp_path):
    with pytest.raises(ModelError, match="metadata key 'colour'.*allowed:"):
        export_onnx(nn.Linear(3, 2), torch.randn(2, 3), tmp_path / "m.onnx", metadata={"colour": 1})


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_unsupported_op_is_refused_naming_the_op(exporter, tmp_path):
    with pytest.raises(ModelError, match=r"dlopt_test(::|\.)twice") as err:
        export_onnx(_CustomOpNet(), torch.randn(2, 6), tmp_path / "m.onnx", exporter=exporter)
    assert "no ONNX conversion" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_parity_failure_is_refused_and_inputs_saved(tmp_path):
    target = tmp_path / "bad.onnx"
    with pytest.raises(ParityError, match="export refused") as err:
        export_onnx(_CustomOpNet(), torch.randn(2, 6), target,
                    translations={torch.ops.dlopt_test.twice.default: _thrice})
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.parity-failure.npz"]
    saved = np.load(err.value.failure_path)
    assert saved["inputs"].shape[1:] == (6,) and len(saved["inputs"]) > 0
    diff = np.abs(saved["torch_outputs"] - saved["onnx_outputs"]).max(axis=1)
    assert (diff > 1e-4).all()


def test_legacy_exporter_and_topped_up_check_inputs(tmp_path):
    torch.manual_seed(1)
    model = create_model("mlp", input_shape=(8,), num_classes=3)
    rep = export_onnx(model, torch.randn(1, 8), tmp_path / "m.onnx", exporter="legacy",
                      check_inputs=torch.randn(10, 8))
    assert rep.exporter == "legacy" and rep.samples == 256 and rep.random_samples == 246
    assert rep.max_abs_diff <= 1e-4
    assert OnnxModel.load(rep.path).run(np.zeros((5, 8), np.float32)).shape == (5, 3)


def test_unknown_exporter_lists_valid_ones(tmp_path):
    with pytest.raises(ModelError, match="valid: dynamo, legacy"):
        export_onnx(nn.Linear(3, 2), torch.randn(2, 3), tmp_path / "m.onnx", exporter="fast")


def test_export_run_cli_writes_metadata_of_the_run(trained_run, tmp_path):
    from typer.testing import CliRunner

    from dlopt.cli import app

    out = tmp_path / "run.onnx"
    result = CliRunner().invoke(app, ["export", str(trained_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "parity on 256 samples" in result.output
    meta = OnnxModel.load(out).metadata
    assert meta.source_run == str(trained_run.resolve())
    assert meta.model["name"] == "lenet5" and meta.dataset["name"] == "mnist"
    assert meta.class_names == [str(i) for i in range(10)]

    from dlopt.train import load

    loaded = load(trained_run)
    raw = np.random.default_rng(0).integers(0, 256, (16, 1, 28, 28)).astype(np.uint8)
    pred, proba = predict_onnx(out, raw)
    ref_pred, ref_proba = loaded.predict(raw)
    np.testing.assert_array_equal(pred, ref_pred)
    np.testing.assert_allclose(proba, ref_proba, atol=1e-5)

    # `dlopt predict` takes the exported file too and prints what the run itself predicts
    np.save(tmp_path / "raw.npy", raw)
    by_onnx = CliRunner().invoke(app, ["predict", str(out), str(tmp_path / "raw.npy"), "--top", "1"])
    by_run = CliRunner().invoke(app, ["predict", str(trained_run), str(tmp_path / "raw.npy"), "--top", "1"])
    assert by_onnx.exit_code == 0 and by_run.exit_code == 0, by_onnx.output + by_run.output
    labels = [line.split("  (")[0] for line in by_onnx.output.splitlines()]
    assert labels == [line.split("  (")[0] for line in by_run.output.splitlines()]
    assert labels == [f"{i}: class {p}" for i, p in enumerate(ref_pred)]
    np.savetxt(tmp_path / "rows.csv", raw.reshape(16, 784), fmt="%d", delimiter=",")  # CSV rows
    by_csv = CliRunner().invoke(app, ["predict", str(out), str(tmp_path / "rows.csv"), "--top", "1"])
    assert by_csv.exit_code == 0, by_csv.output
    assert [line.split("  (")[0] for line in by_csv.output.splitlines()] == labels


def test_export_cli_missing_run_is_one_line_error(tmp_path):
    from typer.testing import CliRunner

    from dlopt.cli import app

    result = CliRunner().invoke(app, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2
    assert "not found" in result.output


def test_export_refuses_an_output_that_is_not_a_file_path(tmp_path):
    import os

    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    # the model is put in place by a rename, which would replace a device node or a FIFO
    for out in (os.devnull, fifo, tmp_path):
        with pytest.raises(ModelError, match="is not a file path"):
            export_onnx(model, torch.zeros(2, 4), out)
    assert fifo.is_fifo() and os.path.exists(os.devnull) and not os.path.isfile(os.devnull)


@pytest.mark.parametrize(("name", "make", "message"), [
    ("empty.npy", lambda p: np.save(p, np.zeros((0, 1, 28, 28), np.uint8)), "no input values"),
    ("nan.npy", lambda p: np.save(p, np.full((1, 1, 28, 28), np.nan, np.float32)),
     "nan.npy: nan at index [0, 0, 0, 0] (784 such value(s))"),
    ("inf.csv", lambda p: p.write_text(",".join(["1"] * 5 + ["-inf"] * 779) + "\n"),
     "line 1, column 6: '-inf' is not a finite number"),
    ("c.npy", lambda p: np.save(p, np.zeros((1, 1, 28, 28), np.complex64)), "complex values"),
    ("text.csv", lambda p: p.write_text(",".join(["1"] * 783 + ["x"]) + "\n"), "holds 'x', not a number"),
])
def test_predict_refuses_unusable_values_in_one_line(trained_run, tmp_path, name, make, message):
    from typer.testing import CliRunner

    from dlopt.cli import app

    make(tmp_path / name)
    res = CliRunner().invoke(app, ["predict", str(trained_run), str(tmp_path / name)])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith("error: ") and message in res.output


@pytest.mark.parametrize("atol", [float("nan"), float("inf"), -1.0])
def test_export_refuses_a_tolerance_that_would_switch_the_check_off(tmp_path, atol):
    with pytest.raises(ModelError, match="allowed: a finite atol >= 0"):
        export_onnx(nn.Linear(4, 2), torch.zeros(2, 4), tmp_path / "m.onnx", atol=atol)
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli_says_how_many_parity_samples_were_random(trained_run, tmp_path):
    """The run's test split has 300 samples: --samples 400 tops it up with 100 random rows,
    and the printed line says so instead of presenting 400 test samples."""
    from typer.testing import CliRunner

    from dlopt.cli import app

    result = CliRunner().invoke(app, ["export", str(trained_run), "--out", str(tmp_path / "m.onnx"),
                                      "--samples", "400", "--exporter", "legacy"])
    assert result.exit_code == 0, result.output
    assert "parity on 400 samples (100 of them random)" in result.output
