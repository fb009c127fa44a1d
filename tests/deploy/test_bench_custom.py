"""dlopt bench on an .onnx file whose metadata names data of another input shape (a custom
module's export recorded the default dataset): timed on random inputs, as one naming none."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.deploy import Contestant, benchmark
from dlopt.errors import ConfigError

FAST = ["--batch-sizes", "1", "--min-runs", "3", "--min-seconds", "0"]


def _naming(src, dst, dataset: dict):
    """A copy of ``src`` whose metadata names ``dataset``."""
    import onnx

    proto = onnx.load(str(src))
    for prop in proto.metadata_props:
        if prop.key == "dlopt.dataset":
            prop.value = json.dumps(dataset)
    onnx.save(proto, str(dst))
    return dst


def test_bench_onnx_whose_dataset_does_not_fit_times_random_inputs(lenet, tmp_path, caplog):
    """Was exit 1: ORT's 'Invalid rank for input: x Got: 2 Expected: 4' from the worker."""
    path = _naming(lenet[1], tmp_path / "iris-named.onnx", {"name": "iris"})
    result = CliRunner().invoke(app, ["bench", str(path), *FAST, "--json"])
    assert result.exit_code == 0, result.output
    assert "takes inputs of shape (1, 28, 28), not (4,)" in caplog.text
    report = json.loads(result.output[result.output.index("{"):])
    assert report["contestants"]["onnxruntime"]["1"]["accuracy"] is None


def test_benchmark_refuses_inputs_a_pytorch_contestant_would_get_unfitted(lenet, tmp_path):
    from dlopt.deploy._bench import zoo_source

    source = zoo_source(lenet[0], "lenet5", input_shape=(1, 28, 28), num_classes=10, weights=tmp_path / "w.st")
    with pytest.raises(ConfigError, match=r"do not fit .* \(takes \(1, 28, 28\)\)"):
        benchmark([Contestant.pytorch(source), Contestant.onnx(lenet[1])], np.zeros((8, 4), np.float32),
                  batch_sizes=(1,))
