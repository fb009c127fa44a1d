"""Deployment stages: ``export``, ``bench``, ``serve_check`` (all through ``dlopt.deploy``)."""

from __future__ import annotations

import base64
import io
import logging
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from dlopt.errors import ConfigError, RunError
from dlopt.pipeline._context import STAGES, Options, StageContext, StageOutput, StageRecord

log = logging.getLogger(__name__)

__all__ = ["onnx_of", "test_data"]


def onnx_of(rec: StageRecord, out_dir: Path) -> Path:
    """An ONNX file for a stage's model: its own ``onnx`` output, or an export of its run
    (with the parity check) into ``out_dir/<stage>.onnx``, reused when already there."""
    if "onnx" in rec.artifacts:
        return rec.path("onnx")
    from dlopt.deploy import export_run

    target = out_dir / f"{rec.name}.onnx"
    if not target.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        export_run(rec.path("run"), target)
    return target


def test_data(onnx: Path, samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The test split named in the model file's metadata, preprocessed as in training."""
    from dlopt.config import DataConfig
    from dlopt.data import load_data
    from dlopt.deploy import OnnxModel, sample_rows

    meta = OnnxModel.load(onnx).metadata
    if not meta.dataset:
        raise RunError(f"{onnx} names no dataset in its metadata; cannot find test samples")
    test = load_data(DataConfig.model_validate(meta.dataset)).test
    return sample_rows(test.x.numpy(), test.y.numpy(), samples)


# -------------------------------------------------------------------------------- export
class ExportOptions(Options):
    """ONNX export of the input run with a parity check (``dlopt.deploy.export_run``)."""

    exporter: str = "dynamo"
    atol: float = Field(1e-4, gt=0)


def _check_export(pipeline: Any, opts: ExportOptions) -> None:
    from dlopt.deploy import EXPORTERS

    if opts.exporter not in EXPORTERS:  # a typo fails now, not after the upstream stages trained
        raise ConfigError(f"exporter={opts.exporter!r} is unknown; allowed: {', '.join(EXPORTERS.names())}")


@STAGES.register("export", schema=ExportOptions, accepts=("run",), produces="onnx", needs_input=True,
                 check=_check_export)
def export_stage(ctx: StageContext, opts: ExportOptions) -> StageOutput:
    """Export the input's model to ``model.onnx``; refused unless it matches PyTorch."""
    from dlopt.deploy import export_run

    run = ctx.input.path("run")  # type: ignore[union-attr]
    rep = export_run(run, ctx.dir / "model.onnx", exporter=opts.exporter, atol=opts.atol)
    src = ctx.input.metrics  # type: ignore[union-attr]
    metrics = {"accuracy": src.get("accuracy"), "params": src.get("params"), "macs": src.get("macs"),
               "size_bytes": rep.size_bytes, "parity_samples": rep.samples,
               "parity_max_abs_diff": rep.max_abs_diff, "top1_agreement": rep.top1_agreement}
    cmd = ["dlopt", "export", str(run), "--out", str(ctx.dir / "model.onnx"), "--exporter", opts.exporter,
           "--atol", f"{opts.atol:g}"]
    return StageOutput(metrics, {"export_seconds": rep.seconds}, {"onnx": "model.onnx"}, [shlex.join(cmd)])


# --------------------------------------------------------------------------------- bench
_MIN_BENCH_SAMPLES = 64


class BenchOptions(Options):
    """ONNX Runtime latency of every model in ``inputs`` (the first is the baseline) on the
    same test samples, one fresh process each (``dlopt.deploy.benchmark``)."""

    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1, 64], min_length=1)
    threads: int = Field(1, ge=1)
    samples: int | None = Field(1000, description=f"test samples timed (>= {_MIN_BENCH_SAMPLES}); null: all")
    min_runs: int = Field(30, ge=3)
    min_seconds: float = Field(1.0, gt=0)
    rounds: int = Field(3, ge=1, description="every model timed once per round (fresh processes); "
                                                "speedups are medians of per-round ratios")


def _check_bench(pipeline: Any, opts: BenchOptions) -> None:
    # here, not as a schema bound: pydantic's words name neither the key's meaning nor null
    if opts.samples is not None and opts.samples < _MIN_BENCH_SAMPLES:
        raise ConfigError(f"samples={opts.samples} is too few; allowed: an integer >= {_MIN_BENCH_SAMPLES}, "
                          f"or null for the whole test split")


@STAGES.register("bench", schema=BenchOptions, accepts=("run", "onnx"), produces="bench", needs_any_input=True,
                 check=_check_bench)
def bench_stage(ctx: StageContext, opts: BenchOptions) -> StageOutput:
    """Benchmark the models of ``inputs`` on the serving runtime; ``bench.json`` keeps it all."""
    from dlopt.deploy import Contestant, benchmark
    from dlopt.train.rundir import write_json

    models = ctx.inputs()
    if not models:
        raise RunError(f"stage {ctx.spec.name!r}: give the models to compare as 'inputs'")
    files = {rec.name: onnx_of(rec, ctx.dir / "onnx") for rec in models}
    x, y = test_data(next(iter(files.values())), opts.samples)
    contestants = [Contestant(name, "onnxruntime", {"onnx": str(p.resolve())}) for name, p in files.items()]
    report = benchmark(contestants, x, y, batch_sizes=opts.batch_sizes, threads=opts.threads,
                       min_runs=opts.min_runs, min_seconds=opts.min_seconds, baseline=models[0].name,
                       rounds=opts.rounds)
    write_json(ctx.dir / "bench.json", report)
    metrics: dict[str, Any] = {"baseline": models[0].name, "models": {}}
    timings: dict[str, Any] = {"models": {}}
    for name, per_batch in report["contestants"].items():
        first = next(iter(per_batch.values()))
        metrics["models"][name] = {k: first.get(k) for k in ("accuracy", "r2", "size_bytes", "params", "macs")}
        timings["models"][name] = {
            str(b): {k: e.get(k) for k in ("p50_ms", "p95_ms", "throughput", "speedup", "verdict")}
            for b, e in per_batch.items()}
    return StageOutput(metrics, timings, {"bench": "bench.json"},
                       [shlex.join(["dlopt", "bench", str(p), *_bench_args(opts)]) for p in files.values()])


def _bench_args(opts: BenchOptions) -> list[str]:
    """The ``dlopt bench`` options that time a model as this stage did."""
    args = ["--batch-sizes", ",".join(map(str, opts.batch_sizes)), "--threads", str(opts.threads),
            "--rounds", str(opts.rounds), "--min-runs", str(opts.min_runs), "--min-seconds", f"{opts.min_seconds:g}"]
    return args + (["--samples", str(opts.samples)] if opts.samples is not None else [])


# --------------------------------------------------------------------------- serve_check
class ServeCheckOptions(Options):
    """Start ``dlopt serve`` on 127.0.0.1, send ``samples`` raw test samples one request
    each, and require every answer to equal local ONNX Runtime on the same input."""

    samples: int = Field(100, ge=1)
    startup_timeout_s: float = Field(60.0, gt=0)
    atol: float = Field(1e-5, gt=0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raw_samples(onnx: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` raw samples (before the saved preprocessing) of the run's test split:
    rows it held out, split as training split them (a set without a test split of its own
    included), so ``served_accuracy`` is never measured on training rows."""
    from dlopt.config import DataConfig
    from dlopt.data import splits_of
    from dlopt.deploy import OnnxModel

    dataset = OnnxModel.load(onnx).metadata.dataset
    if not dataset:
        raise RunError(f"serve_check: {onnx} names no dataset to take test samples from; allowed: "
                       "a model exported from a run (dlopt export)")
    x, y = splits_of(DataConfig.model_validate(dataset)).test
    return np.asarray(x[:n]), np.asarray(y[:n])


def _predict_body(x: np.ndarray) -> dict[str, Any]:
    """The request for raw rows ``x``: a table with text columns goes as JSON rows (strings
    there, null for a missing number), since ``inputs_npy`` takes numbers only."""
    if x.dtype != object:
        return {"inputs_npy": _npy_b64(x)}
    return {"inputs": [[v if isinstance(v, str) else None if np.isnan(float(v)) else float(v) for v in row]
                       for row in x.tolist()]}


def _npy_b64(x: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode()


def _local_answers(model: Any, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Local ONNX Runtime's answers one row at a time, as the rows are served: a dynamically
    quantized model (DynamicQuantizeLinear) takes its activation ranges from the whole batch,
    so a row's answer within a batch of 100 differs from its answer alone."""
    answers = [model.predict_raw(x_raw[i:i + 1]) for i in range(len(x_raw))]
    pred = np.concatenate([a[0] for a in answers])
    probas = [a[1] for a in answers]
    return pred, (None if any(p is None for p in probas) else np.concatenate(probas))


def _wait_ready(client: Any, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            raise RunError(f"the server exited with code {proc.returncode}: {err[-1] if err else 'no output'}")
        try:
            if client.get("/v1/health/ready").status_code == 200:
                return
        except Exception:  # noqa: BLE001  connection refused while it starts
            pass
        time.sleep(0.2)
    raise RunError(f"the server was not ready within {timeout:g} s")


@STAGES.register("serve_check", schema=ServeCheckOptions, accepts=("onnx", "run"), produces="check",
                 needs_input=True)
def serve_check_stage(ctx: StageContext, opts: ServeCheckOptions) -> StageOutput:
    """Serve the input's model over HTTP and check its answers against local ONNX Runtime."""
    import httpx

    from dlopt.deploy import OnnxModel

    onnx = onnx_of(ctx.input, ctx.dir)  # type: ignore[arg-type]
    x_raw, y = _raw_samples(onnx, opts.samples)
    local_pred, local_proba = _local_answers(OnnxModel.load(onnx), x_raw)
    port = _free_port()
    cmd = [sys.executable, "-m", "dlopt", "serve", str(onnx), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.perf_counter()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
            _wait_ready(client, proc, opts.startup_timeout_s)
            startup = time.perf_counter() - t0
            equal, max_diff, served = 0, 0.0, []
            t1 = time.perf_counter()
            for i in range(len(x_raw)):
                r = client.post("/v1/predict", json=_predict_body(x_raw[i:i + 1]))
                if r.status_code != 200:
                    raise RunError(f"sample {i}: the server answered {r.status_code}: {r.text[:200]}")
                body = r.json()
                pred = body["predictions"][0]
                served.append(pred)
                same = pred == local_pred[i].item()
                if local_proba is not None:
                    diff = float(np.max(np.abs(np.asarray(body["probabilities"][0]) - local_proba[i])))
                    max_diff = max(max_diff, diff)
                    same = same and diff <= opts.atol
                equal += int(same)
            seconds = time.perf_counter() - t1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    n = len(x_raw)
    metrics = {"samples": n, "served_split": "test", "equal": equal, "max_proba_diff": max_diff,
               "served_accuracy": float(np.mean(np.asarray(served) == y)) if y.dtype.kind in "iu" else None,
               "passed": equal == n}
    if equal != n:
        raise RunError(f"serve_check: {n - equal} of {n} served answers differ from local ONNX Runtime "
                       f"(max probability diff {max_diff:.2e})")
    return StageOutput(metrics, {"startup_seconds": startup, "mean_request_ms": 1000 * seconds / n},
                       {"onnx": ctx.artifact(onnx)},
                       [shlex.join(["dlopt", "serve", str(onnx), "--host", "127.0.0.1", "--port", "8000"])])
