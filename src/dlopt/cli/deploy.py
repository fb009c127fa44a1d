"""``dlopt export``, ``dlopt bench`` and ``dlopt serve``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from dlopt.cli._app import command, setup_logging, writable_file
from dlopt.errors import ConfigError


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--batch-sizes {text!r} is invalid; allowed: comma-separated integers >= 1, e.g. 1,8,64")
    return sizes


@command("export")
def export(
    run: Path = typer.Argument(..., help="run directory to export"),
    out: Path = typer.Option(..., "--out", "-o", help="the .onnx file to write"),
    exporter: str = typer.Option("dynamo", "--exporter", help="dynamo | legacy"),
    samples: int = typer.Option(256, "--samples", min=256, help="test samples for the parity check"),
    atol: float = typer.Option(1e-4, "--atol", help="max |ONNX - PyTorch| allowed"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Export a run to one ONNX file (dynamic batch, metadata embedded) after a parity check."""
    setup_logging(verbose)
    from dlopt.deploy import export_run

    if out.suffix.lower() != ".onnx":  # x.pt would hold ONNX that torch.load and tools keyed on .pt misread
        raise ConfigError(f"--out {out}: the file is ONNX; allowed: a path ending in .onnx, e.g. "
                          f"{out.with_suffix('.onnx')}")
    rep = export_run(run, out, exporter=exporter, samples=samples, atol=atol)
    agree = "n/a" if rep.top1_agreement is None else f"{rep.top1_agreement:.2%}"
    # a small test split is topped up with random rows: say how many were not real samples
    random = f" ({rep.random_samples} of them random)" if rep.random_samples else ""
    typer.echo(f"wrote {rep.path} ({rep.size_bytes / 1024:.1f} KiB, exporter {rep.exporter}); parity on "
               f"{rep.samples} samples{random}: max |diff| {rep.max_abs_diff:.2g}, top-1 agreement {agree}")


@command("bench")
def bench(
    model_or_run: Path = typer.Argument(..., help="run directory or .onnx file"),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="FP32 .onnx of the run (default: export it)"),
    int8: Optional[Path] = typer.Option(None, "--int8", help="a quantized .onnx to add as a contestant"),
    compiled: bool = typer.Option(False, "--compile", help="add a torch.compile contestant (slow warm-up)"),
    batch_sizes: str = typer.Option("1,8,64", "--batch-sizes", help="comma-separated"),
    threads: int = typer.Option(1, "--threads", min=1, help="threads for every contestant"),
    samples: Optional[int] = typer.Option(None, "--samples", min=1, help="test samples used: a seeded stratified sample (default: all)"),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="contestant to compare against"),
    min_runs: int = typer.Option(30, "--min-runs", min=3),
    min_seconds: float = typer.Option(1.0, "--min-seconds", min=0.0),
    rounds: int = typer.Option(1, "--rounds", min=1,
                               help="time every contestant once per round; speedups paired by round"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the JSON report here"),
    as_json: bool = typer.Option(False, "--json", help="print the JSON report instead of the table"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Benchmark a run or .onnx file: latency, throughput, memory, size, accuracy, verdicts.

    Each contestant (PyTorch eager, torch.compile with --compile, ONNX Runtime FP32, INT8 with
    --int8) runs in a fresh process with the same inputs and threads.
    """
    setup_logging(verbose)
    from dlopt.deploy import bench_run, bench_table

    if out is not None:
        writable_file(out, "--out")
    report = bench_run(model_or_run, onnx=onnx, int8=int8, compiled=compiled,
                       batch_sizes=_batch_sizes(batch_sizes), threads=threads, samples=samples,
                       baseline=baseline, min_runs=min_runs, min_seconds=min_seconds, rounds=rounds)
    text = json.dumps(report, indent=1)
    if out is not None:
        out.write_text(text + "\n")
    if as_json:
        typer.echo(text)
        return
    from rich.console import Console

    console = Console()
    console.width = max(console.width, 140)  # the table needs ~130 columns; wrapping is worse
    console.print(bench_table(report))


@command("serve")
def serve(
    model: Path = typer.Argument(..., help="a local .onnx file (dlopt export)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default: loopback only)"),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    max_body_mb: float = typer.Option(8.0, "--max-body-mb", help="request body limit (413 above)"),
    max_batch: int = typer.Option(256, "--max-batch", min=1, help="samples per request"),
    max_queue: int = typer.Option(64, "--max-queue", min=1, help="requests in progress before 503"),
    timeout_s: float = typer.Option(10.0, "--timeout-s", help="per-request limit (504 above)"),
    batch_wait_ms: float = typer.Option(0.0, "--batch-wait-ms", help="micro-batching window; 0 = off"),
    batch_max: int = typer.Option(64, "--batch-max", min=1, help="micro-batch size limit (samples)"),
    workers: int = typer.Option(1, "--workers", min=1, help="inference threads"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ORT intra-op threads"),
    log_level: str = typer.Option("warning", "--log-level"),
) -> None:
    """Serve an ONNX model over HTTP (FastAPI + uvicorn + ONNX Runtime), safe by default."""
    setup_logging(log_level.lower() in ("info", "debug"))
    from dlopt.deploy import ServeSettings
    from dlopt.deploy import serve as run_server

    settings = ServeSettings(max_body_mb=max_body_mb, max_batch=max_batch, max_queue=max_queue,
                             timeout_s=timeout_s, batch_wait_ms=batch_wait_ms, batch_max=batch_max,
                             workers=workers, threads=threads)
    def started(url: str) -> None:
        typer.echo(f"serving {model} on {url} (POST /v1/predict; GET /v1/health/live, "
                   f"/v1/health/ready, /v1/metadata; Ctrl-C stops)")

    run_server(model, host=host, port=port, settings=settings, log_level=log_level.lower(),
               on_start=started)
