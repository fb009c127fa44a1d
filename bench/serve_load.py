"""Load test of ``dlopt serve``: a real server on 127.0.0.1, closed-loop clients at several
concurrency levels, each for a fixed duration.

    python bench/serve_load.py --model model.onnx --duration 60

Prints one JSON object:
``{"concurrency": {"1": {"requests", "errors", "p50_ms", "p99_ms", "rps"}, "4": {...},
"16": {...}}, "rss_mb_before", "rss_mb_after"}``. An error is any non-2xx response or a
failed connection. Each request is one sample (batch 1) of the model's raw input shape.
The server runs in its own process (``python -m dlopt serve``); the clients share the
machine with it, so on a small machine the figures include the load generator's cost.
Without ``--model`` a LeNet-5 with random weights is exported to a temporary folder.

``--sweep-rounds R`` (R > 0) then sends every batch size 1 .. ``--max-batch`` once per round,
shuffled, one request at a time, and adds ``"batch_sweep": {"max_batch", "rss_mb_start",
"rss_mb_after_round": [...]}``: the server's memory as it meets every batch size (growth that
stops after a round is bounded, not a leak).

    python bench/serve_load.py --concurrency 1 --duration 5 --sweep-rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("serve_load")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _default_model(folder: Path) -> Path:
    import torch

    from dlopt.data import load_dataset
    from dlopt.deploy import export_onnx
    from dlopt.models import create_model

    bundle = load_dataset("mnist", subset=500, test_subset=256)
    torch.manual_seed(0)
    model = create_model("lenet5", input_shape=(1, 28, 28), num_classes=10)
    path = folder / "lenet5.onnx"
    export_onnx(model, bundle.test.x[:2], path, check_inputs=bundle.test.x,
                metadata={"class_names": bundle.info.class_names, "preprocess": bundle.preprocessor})
    return path


def _start_server(model: Path, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dlopt", "serve", str(model), "--port", str(port), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/v1/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server not ready after {timeout} s")


def _bodies(url: str, n: int = 64) -> list[bytes]:
    """``n`` one-sample JSON bodies of the served model's raw shape (pre-encoded)."""
    import httpx

    meta = httpx.get(f"{url}/v1/metadata").json()
    shape = tuple(meta["input"]["raw_shape"])
    rng = np.random.default_rng(0)
    if meta["input"]["takes_images"]:
        xs = rng.integers(0, 256, (n, 1, *shape))
    else:
        xs = rng.normal(size=(n, 1, *shape)).round(4)
    return [json.dumps({"inputs": x.tolist()}).encode() for x in xs]


def _sweep(url: str, pid: int, max_batch: int, rounds: int) -> dict[str, Any]:
    """RSS after each round of every batch size 1 .. ``max_batch`` (shuffled, JSON bodies)."""
    import httpx

    one = json.loads(_bodies(url, 1)[0])["inputs"][0]
    rng = np.random.default_rng(0)
    after: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as c:
        start = _rss_mb(pid)
        for _ in range(rounds):
            for n in rng.permutation(np.arange(1, max_batch + 1)):
                r = c.post("/v1/predict", json={"inputs": [one] * int(n)})
                r.raise_for_status()
            after.append(round(_rss_mb(pid), 1))
    return {"max_batch": max_batch, "rss_mb_start": round(start, 1), "rss_mb_after_round": after}


async def _level(url: str, concurrency: int, duration: float, bodies: list[bytes]) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient, k: int) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < deadline:
            body = bodies[i % len(bodies)]
            i += concurrency
            t0 = time.perf_counter()
            try:
                resp = await client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
                ok = 200 <= resp.status_code < 300
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += not ok

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client, k) for k in range(concurrency)))
    elapsed = time.perf_counter() - start
    lat = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {"requests": len(latencies), "errors": errors, "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3), "rps": round(len(latencies) / elapsed, 1)}


def run(model: Path | None, duration: float, levels: list[int], serve_args: list[str],
        sweep: tuple[int, int] = (0, 256)) -> dict[str, Any]:
    """Start the server, load it level by level, then (``sweep`` = (rounds, max batch), rounds
    > 0) sweep the batch sizes, stop it; return the JSON-able result."""
    with tempfile.TemporaryDirectory(prefix="dlopt-serve-load-") as tmp:
        path = model or _default_model(Path(tmp))
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = _start_server(path, port, serve_args)
        result_sweep: dict[str, Any] = {}
        try:
            _wait_ready(url, proc)
            bodies = _bodies(url)
            rss_before = _rss_mb(proc.pid)
            result = {}
            for c in levels:
                log.info("concurrency %d for %.0f s", c, duration)
                result[str(c)] = asyncio.run(_level(url, c, duration, bodies))
            rss_after = _rss_mb(proc.pid)
            if sweep[0] > 0:
                result_sweep = _sweep(url, proc.pid, sweep[1], sweep[0])
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    out = {"concurrency": result, "rss_mb_before": round(rss_before, 1), "rss_mb_after": round(rss_after, 1)}
    return {**out, "batch_sweep": result_sweep} if sweep[0] > 0 else out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a .onnx file (default: random LeNet-5)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per concurrency level")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated levels")
    parser.add_argument("--max-queue", type=int, default=64, help="passed to dlopt serve")
    parser.add_argument("--threads", type=int, default=None, help="ORT intra-op threads of the server")
    parser.add_argument("--sweep-rounds", type=int, default=0,
                        help="rounds of every batch size 1..--max-batch after the levels (0: none)")
    parser.add_argument("--max-batch", type=int, default=256, help="passed to dlopt serve")
    args = parser.parse_args(argv)
    if args.sweep_rounds < 0 or args.max_batch < 1:
        parser.error("--sweep-rounds must be >= 0 and --max-batch >= 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    serve_args = ["--max-queue", str(args.max_queue), "--max-batch", str(args.max_batch)]
    if args.threads:
        serve_args += ["--threads", str(args.threads)]
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(json.dumps(run(args.model, args.duration, levels, serve_args,
                         (args.sweep_rounds, args.max_batch))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
