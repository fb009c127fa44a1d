"""The benchmark harness: fresh-process contestants, the JSON contract, the CLI forms.
Keys and consistency are checked, never times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.deploy import Contestant, benchmark, quantize_static_onnx
from dlopt.deploy._bench import zoo_source
from dlopt.errors import ConfigError

ENTRY_KEYS = {"p50_ms", "p95_ms", "p99_ms", "throughput", "peak_mb", "size_bytes", "params", "macs",
              "accuracy", "speedup", "verdict", "iqr_ms", "mad_ms", "runs", "noise_threshold"}
FAST = ["--batch-sizes", "1,8", "--min-runs", "5", "--min-seconds", "0.05"]


def _check_report(report: dict, contestants: set[str], baseline: str) -> None:
    assert report["schema_version"] == 1 and report["baseline"] == baseline
    env = report["environment"]
    assert env["cpu"]["model"] and env["threads"] == 1 and env["versions"]["onnxruntime"]
    assert env["cpu"]["flags"] and len(env["load_average"]) == 3
    assert set(report["contestants"]) == contestants
    for name, per_bs in report["contestants"].items():
        assert set(per_bs) == {"1", "8"}
        for entry in per_bs.values():
            assert ENTRY_KEYS <= set(entry)
            assert entry["p50_ms"] <= entry["p95_ms"] <= entry["p99_ms"] and entry["runs"] >= 5
            assert entry["verdict"] in ({"baseline"} if name == baseline else {"faster", "slower", "no change"})
            assert entry["size_bytes"] > 0 and entry["peak_mb"] >= 0


def test_benchmark_pytorch_onnx_and_int8(lenet, mnist, tmp_path):
    model, path = lenet
    source = zoo_source(model, "lenet5", input_shape=(1, 28, 28), num_classes=10,
                        weights=tmp_path / "lenet.safetensors")
    int8 = quantize_static_onnx(path, tmp_path / "lenet-int8.onnx", mnist.train.x[:64].numpy())
    contestants = [Contestant.pytorch(source), Contestant.onnx(path), Contestant.onnx(int8, int8=True)]
    report = benchmark(contestants, mnist.test.x.numpy(), mnist.test.y.numpy(), batch_sizes=(8, 1),
                       min_runs=5, min_seconds=0.05, warmup_seconds=0.01)
    _check_report(report, {"pytorch", "onnxruntime", "onnxruntime-int8"}, "pytorch")
    torch_e, ort_e = report["contestants"]["pytorch"]["1"], report["contestants"]["onnxruntime"]["1"]
    # same weights: same parameter count and MACs, (near) identical accuracy
    assert torch_e["params"] == ort_e["params"] == sum(p.numel() for p in model.parameters())
    assert torch_e["macs"] == ort_e["macs"] > 0
    assert abs(torch_e["accuracy"] - ort_e["accuracy"]) <= 1 / 300
    assert report["contestants"]["onnxruntime-int8"]["1"]["params"] == ort_e["params"]


def test_benchmark_in_rounds_pairs_speedups_round_by_round(lenet, mnist, tmp_path):
    _, path = lenet
    twin = tmp_path / "twin.onnx"
    twin.write_bytes(path.read_bytes())
    report = benchmark([Contestant.onnx(path), Contestant("twin", "onnxruntime", {"onnx": str(twin)})],
                       mnist.test.x.numpy()[:64], batch_sizes=(1, 8), min_runs=5, min_seconds=0.05,
                       warmup_seconds=0.01, rounds=3)
    assert report["settings"]["rounds"] == 3
    for bs, entry in report["contestants"]["twin"].items():
        base = report["contestants"]["onnxruntime"][bs]
        assert len(entry["round_speedups"]) == 3 and entry["runs"] >= 15 and base["runs"] >= 15
        assert entry["speedup"] == pytest.approx(sorted(entry["round_speedups"])[1], rel=1e-3)
        side = {"faster": min(entry["round_speedups"]) > 1, "slower": max(entry["round_speedups"]) < 1}
        assert side.get(entry["verdict"], True)  # a verdict only where every round agrees
        assert entry["p50_ms"] <= entry["p95_ms"] <= entry["p99_ms"]
    with pytest.raises(ConfigError, match="rounds=0"):
        benchmark([Contestant.onnx(path)], [[0.0]], rounds=0)


def test_benchmark_refuses_bad_settings(lenet):
    _, path = lenet
    with pytest.raises(ConfigError, match="baseline 'pytorch' is not a contestant"):
        benchmark([Contestant.onnx(path)], [[0.0]], baseline="pytorch")
    with pytest.raises(ConfigError, match="batch sizes"):
        benchmark([Contestant.onnx(path)], [[0.0]], batch_sizes=(0,))


def test_bench_cli_on_an_onnx_file(lenet, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", str(lenet[1]), *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.output and "baseline" in result.output  # the table
    report = json.loads(out.read_text())
    _check_report(report, {"onnxruntime"}, "onnxruntime")
    # the file names its dataset, so accuracy is measured on that test split
    assert report["contestants"]["onnxruntime"]["1"]["accuracy"] is not None


def test_bench_cli_on_an_onnx_file_whose_data_is_not_here_times_random_inputs(tmp_path, monkeypatch):
    # the csv the run was trained on is gone (or its relative path read elsewhere names
    # nothing): bench still times the file
    import yaml

    monkeypatch.chdir(tmp_path)
    Path("rows.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(40)))
    Path("run.yaml").write_text(yaml.safe_dump({
        "name": "rows", "model": {"name": "mlp", "width": 8, "depth": 1},
        "data": {"name": "csv:rows.csv", "target": "y"},
        "train": {"epochs": 1, "batch_size": 16, "progress": False}}))
    runner = CliRunner()
    assert runner.invoke(app, ["train", "run.yaml", "--run-dir", "run"]).exit_code == 0
    assert runner.invoke(app, ["export", "run", "--out", "rows.onnx", "--exporter", "legacy"]).exit_code == 0
    Path("rows.csv").unlink()  # the metadata may name it absolute
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = runner.invoke(app, ["bench", "../rows.onnx", *FAST, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["contestants"]["onnxruntime"]["1"]["accuracy"] is None


def test_bench_cli_on_a_run(trained_run):
    # no --onnx: the run is exported (with its parity check) on the fly
    result = CliRunner().invoke(app, ["bench", str(trained_run), *FAST, "--samples", "200", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    _check_report(report, {"pytorch", "onnxruntime"}, "pytorch")
    accs = {n: e["1"]["accuracy"] for n, e in report["contestants"].items()}
    assert abs(accs["pytorch"] - accs["onnxruntime"]) <= 1 / 200
    assert report["model"]["name"] == "lenet5" and report["settings"]["samples"] == 200


def test_bench_cli_bad_batch_sizes(lenet):
    result = CliRunner().invoke(app, ["bench", str(lenet[1]), "--batch-sizes", "1,x"])
    assert result.exit_code == 2 and "--batch-sizes" in result.output


def test_bench_cli_unusable_out_is_refused_before_the_benchmark(lenet, tmp_path):
    (tmp_path / "afile").write_text("")
    for out, message in ((tmp_path, "not a file path"), (tmp_path / "afile" / "b.json", "cannot write in")):
        result = CliRunner().invoke(app, ["bench", str(lenet[1]), "--out", str(out)])
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert message in result.output


@pytest.mark.parametrize("option, name, words", [
    ("--int8", "nope.onnx", "not found"), ("--onnx", "digit.png", "not a valid ONNX file"),
])
def test_bench_cli_bad_onnx_or_int8_file_is_one_line_before_the_benchmark(trained_run, tmp_path, option, name, words):
    path = tmp_path / name
    if name.endswith(".png"):
        path.write_bytes(b"\x89PNG\r\n\x1a\n not an onnx model")
    result = CliRunner().invoke(app, ["bench", str(trained_run), option, str(path), *FAST])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert words in result.output and str(path) in result.output


def test_bench_cli_onnx_or_int8_of_another_model_is_refused_before_the_benchmark(trained_run, lenet, tmp_path):
    """A file with other inputs than the run (or the .onnx benchmarked) would fail in its
    worker after the other contestants were timed: one line, exit 2, first."""
    import torch

    from dlopt.deploy import export_onnx

    other = tmp_path / "mlp.onnx"
    export_onnx(torch.nn.Sequential(torch.nn.Linear(10, 3)), torch.zeros(2, 10), other, exporter="legacy")
    for args in ([str(trained_run), "--onnx", str(other)], [str(lenet[1]), "--int8", str(other)]):
        result = CliRunner().invoke(app, ["bench", *args, *FAST])
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert f"{other} takes inputs of shape (10,) but" in result.output and "(1, 28, 28)" in result.output


def test_bench_of_an_onnx_file_builds_one_onnx_runtime_session_for_it(lenet, monkeypatch):
    """Its shape was checked in bench_run, read again for its test data and checked again in
    benchmark: three sessions of one file before the workers started. Now one."""
    from dlopt.deploy import OnnxModel
    from dlopt.deploy._run import bench_run

    loads: list[str] = []
    real = OnnxModel.load.__func__

    def counting(cls, path, **kw):
        loads.append(str(path))
        return real(cls, path, **kw)

    monkeypatch.setattr(OnnxModel, "load", classmethod(counting))
    report = bench_run(lenet[1], batch_sizes=(1,), samples=16, min_runs=3, min_seconds=0)
    assert loads == [str(lenet[1])]
    assert report["contestants"]["onnxruntime"]["1"]["accuracy"] is not None


def test_the_public_benchmark_checks_every_onnx_file_itself():
    """Only bench_run, which checked the files, may hand over their input shape
    (``benchmark_checked``): a caller of ``benchmark`` cannot skip the check."""
    import inspect

    assert "input_shape" not in inspect.signature(benchmark).parameters


def test_the_bench_worker_scores_without_importing_torch():
    """``class_probabilities`` comes through dlopt.train's lazy exports: importing torch in the
    worker would add ~290 MB to the ``peak_mb`` an ONNX contestant reports."""
    import subprocess
    import sys

    code = ("import sys, dlopt.deploy._bench_worker as w; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "print(w.class_probabilities([[0.0]]).tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[[0.5, 0.5]]", out.stderr
