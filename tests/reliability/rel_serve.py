"""The server under attack and under load: a real ``python -m dlopt serve`` process, fuzzed
with the deployment tests' OpenAPI-shaped hypothesis requests plus a hand-written hostile set
(bad JSON, deep nesting, huge numbers, NaN/Inf, wrong dtype/shape, empty and 100 MB bodies,
slow clients); then closed-loop load at several concurrencies and a soak."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from rel_common import ROOT, fresh_dir, result, rss_mb


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _serve_load() -> Any:
    """bench/serve_load.py: server start/stop, bodies and the closed-loop load generator."""
    return _load("_serve_load_bench", ROOT / "bench" / "serve_load.py")


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


@contextlib.contextmanager
def _server(*args: str) -> Iterator[tuple[str, Any]]:
    """A served random-weight LeNet-5 in its own process: yields (url, process)."""
    import signal

    sl = _serve_load()
    model = sl._default_model(fresh_dir("serve"))
    port = sl._free_port()
    url = f"http://127.0.0.1:{port}"
    proc = sl._start_server(model, port, list(args))
    try:
        sl._wait_ready(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except Exception:  # noqa: BLE001 - it would not stop: make sure it is gone
                proc.kill()


# ----------------------------------------------------------------------------- raw sockets
def _status_line(sock: socket.socket) -> str:
    data = b""
    while b"\r\n" not in data:
        part = sock.recv(4096)
        if not part:
            break
        data += part
    return data.split(b"\r\n")[0].decode(errors="replace")


def _declared_huge(url: str, megabytes: int) -> str:
    """Announce a ``megabytes`` body and send none of it: the answer must come anyway."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall((f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {megabytes * 2**20}\r\n\r\n").encode())
        return _status_line(s)


def _streamed_huge(url: str, megabytes: int) -> tuple[str, int]:
    """Stream a chunked body of up to ``megabytes``; (status line, MiB sent before the answer)."""
    host, port = url.removeprefix("http://").split(":")
    chunk = b"100000\r\n" + b" " * 0x100000 + b"\r\n"  # 1 MiB chunks
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(megabytes):
                s.sendall(chunk)
                sent += 1
            s.sendall(b"0\r\n\r\n")
        except OSError:  # the server answered and closed: stop sending
            pass
        return _status_line(s), sent


def _slow_clients(url: str, clients: int, seconds: float) -> list[threading.Thread]:
    """Slowloris: ``clients`` connections trickling a request one byte every 0.25 s."""
    host, port = url.removeprefix("http://").split(":")
    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n"

    def trickle() -> None:
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=30) as s:
            deadline = time.monotonic() + seconds
            for b in head + b" " * 64:
                if time.monotonic() > deadline:
                    break
                s.sendall(bytes([b]))
                time.sleep(0.25)

    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    return threads


ROW = [[0.5] * 28] * 28


def _pickled_npy_b64() -> str:
    import base64
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return base64.b64encode(buf.getvalue()).decode()


def _hostile_bodies() -> dict[str, tuple[bytes, str]]:
    """name -> (body, content type): everything a careless or hostile client sends."""
    j = "application/json"
    big_batch = json.dumps({"inputs": [ROW] * 300}).encode()
    return {
        "malformed json": (b'{"inputs": [', j), "not utf-8": (b'\xff\xfe{"inputs": 1}', j),
        "json null": (b"null", j), "empty body": (b"", j), "empty body, no type": (b"", ""),
        "deep list nesting": (b'{"inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", j),
        "deep object nesting": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, j),
        "huge float": (json.dumps({"inputs": [[[1e308] * 28] * 28]}).encode(), j),
        "overflowing float": (b'{"inputs": [' + json.dumps([[1.0] * 28] * 27).encode()[:-1]
                              + b", [" + b"1e999, " * 27 + b"1e999]]]}", j),
        "5,000-digit integer": (b'{"inputs": [[[' + b"9" * 5000 + b"]]]}", j),
        # beyond float32 (an integer past int64 but within float32 is a number like any other)
        "huge integers": (json.dumps({"inputs": [[[2**130] * 28] * 28]}).encode(), j),
        "NaN literal": (b'{"inputs": [[' + b"[NaN, " * 1 + b"0]]]}", j),
        "Infinity literals": (json.dumps({"inputs": [[[float("inf"), float("-inf")] * 14] * 28]}).encode(), j),
        "strings": (json.dumps({"inputs": [[["x"] * 28] * 28]}).encode(), j),
        "object for inputs": (json.dumps({"inputs": {"a": 1}}).encode(), j),
        "wrong shape": (json.dumps({"inputs": [[1.0, 2.0, 3.0]]}).encode(), j),
        "ragged": (json.dumps({"inputs": [ROW, [[0.0]]]}).encode(), j),
        "batch over the limit": (big_batch, j),
        "7 MB of empty lists": (b'{"inputs": [' + b"[]," * (7 * 2**20 // 3) + b"[]]}", j),
        "npy of pickled objects": (json.dumps({"inputs_npy": _pickled_npy_b64()}).encode(), j),
        "xml": (b"<inputs>1</inputs>", "application/xml"),
        "form": (b"inputs=1", "application/x-www-form-urlencoded"),
        "broken multipart": (b"--zz\r\nContent-Disposition: form-data; name=image\r\n\r\n\x89PNG", "multipart/form-data; boundary=zz"),
        "png header only": (b"\x89PNG\r\n\x1a\n", "image/png"),
    }


def _hostile(url: str, pid: int) -> tuple[dict[str, int], list[str], dict[str, Any]]:
    """Send the hostile set; (status per case, failures, figures with the server's peak
    memory after each phase)."""
    import httpx

    peaks: dict[str, float] = {}
    statuses: dict[str, int] = {}
    failures: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as c:
        for name, (body, ctype) in _hostile_bodies().items():
            headers = {"content-type": ctype} if ctype else {}
            r = c.post("/v1/predict", content=body, headers=headers)
            statuses[name] = r.status_code
            if r.status_code >= 500 or not (400 <= r.status_code < 500):
                failures.append(f"hostile {name}: {r.status_code} {r.text[:120]}")
            else:
                with contextlib.suppress(ValueError):
                    if set(r.json()) != {"error", "detail"}:
                        failures.append(f"hostile {name}: error body {r.text[:120]}")
    peaks["bodies"] = _peak_mb(pid)
    declared = _declared_huge(url, 100)
    peaks["100MB declared"] = _peak_mb(pid)
    streamed, sent_mb = _streamed_huge(url, 100)
    peaks["100MB chunked"] = _peak_mb(pid)
    statuses["100 MB declared, not sent"] = int(declared.split()[1]) if len(declared.split()) > 1 else 0
    statuses["100 MB chunked"] = int(streamed.split()[1]) if len(streamed.split()) > 1 else 0
    if " 413" not in declared:
        failures.append(f"100 MB declared: {declared!r}, not 413 before the body")
    if " 413" not in streamed:
        failures.append(f"100 MB chunked: {streamed!r}")
    threads = _slow_clients(url, 16, 6.0)
    time.sleep(0.5)
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=30) as c:
        ok = c.post("/v1/predict", json={"inputs": [ROW]})
    during_slow_ms = (time.perf_counter() - t0) * 1000
    if ok.status_code != 200:
        failures.append(f"a normal request among slow clients: {ok.status_code}")
    for t in threads:
        t.join(10)
    peaks["slow clients"] = _peak_mb(pid)
    return statuses, failures, {"peak_rss_mb_after": {k: round(v, 1) for k, v in peaks.items()},
                                "chunked_mb_sent_before_413": sent_mb,
                                "request_ms_among_16_slow_clients": round(during_slow_ms, 1)}


def _fuzz(url: str, requests: int) -> tuple[dict[int, int], list[str]]:
    """``requests`` hypothesis requests built by the deployment fuzz test's strategies."""
    import httpx
    from hypothesis import HealthCheck, given, settings

    fz = _load("_deploy_fuzz_tests", ROOT / "tests" / "deploy" / "test_fuzz.py")
    statuses: dict[int, int] = {}
    failures: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as c:
        openapi = c.get("/openapi.json").json()

        @settings(max_examples=requests, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(fz._requests(openapi))
        def one(req: dict[str, Any]) -> None:
            try:
                r = c.request(**req)
            except httpx.HTTPError as exc:
                failures.append(f"fuzz {req.get('url')}: {type(exc).__name__}")
                return
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code >= 500:
                failures.append(f"fuzz {req.get('url')}: {r.status_code} {r.text[:120]}")

        if requests:
            one()
    return statuses, failures


def server_fuzz(requests: int = 1000, *, body_limit_mb: float = 8.0) -> dict[str, Any]:
    """Fuzz and hostile set against a served model (body limit ``body_limit_mb``): no 5xx,
    no crash, 413 before over-limit bodies are read, memory growth under 2x the limit."""
    import httpx

    with _server("--max-body-mb", str(body_limit_mb)) as (url, proc):
        with httpx.Client(base_url=url, timeout=30) as c:  # warm up (a full batch too) before the baseline
            for n in (1, 8, 64, 256, 256):
                c.post("/v1/predict", json={"inputs": [[ROW]] * n})
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # peak RSS := current RSS (Linux >= 4.0)
        base = rss_mb(proc.pid)
        statuses, failures = _fuzz(url, requests)
        after_fuzz = _peak_mb(proc.pid)
        # the limit is about what hostile bodies cost, so measure from here (fuzz growth: a figure)
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
        hostile_base = rss_mb(proc.pid)
        hostile, hostile_failures, figures = _hostile(url, proc.pid)
        failures += hostile_failures
        alive = proc.poll() is None
        peak = _peak_mb(proc.pid) if alive else float("nan")
        json_batch = _max_batch_json_cost(url, proc.pid) if alive else {}
        ready = proc.poll() is None and httpx.get(f"{url}/v1/health/ready", timeout=10).status_code == 200
    growth = peak - hostile_base
    if not ready:
        failures.append(f"server not alive and ready afterwards (exit {proc.returncode})")
    if not growth < 2 * body_limit_mb:
        failures.append(f"server memory grew {growth:.1f} MiB over the hostile set, limit 2 x {body_limit_mb} MiB")
    fivexx = sum(n for s, n in statuses.items() if s >= 500) + sum(s >= 500 for s in hostile.values())
    return result(failures, fuzz_requests=sum(statuses.values()), hostile_requests=len(hostile),
                  responses_5xx=fivexx, crashes=int(not alive), fuzz_statuses={str(k): v for k, v in sorted(statuses.items())},
                  hostile_statuses=hostile, body_limit_mb=body_limit_mb, rss_mb_before=round(base, 1),
                  fuzz_memory_growth_mb=round(after_fuzz - base, 1), rss_mb_before_hostile=round(hostile_base, 1),
                  peak_rss_mb=round(peak, 1), memory_growth_mb=round(growth, 1), **figures,
                  valid_max_batch_json=json_batch)


def _max_batch_json_cost(url: str, pid: int) -> dict[str, Any]:
    """What one valid full batch (256 samples as JSON lists, ~2.5 MB) costs the server in
    peak memory: not a limit check, a figure (JSON numbers become Python objects; the
    base64 .npy input avoids that)."""
    import httpx

    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak := now, so the figure is this request's
    before = rss_mb(pid)
    body = json.dumps({"inputs": [[[[0.123456789] * 28] * 28]] * 256}).encode()
    r = httpx.post(f"{url}/v1/predict", content=body, headers={"content-type": "application/json"}, timeout=60)
    return {"status": r.status_code, "body_mb": round(len(body) / 2**20, 2),
            "peak_growth_mb": round(_peak_mb(pid) - before, 1)}


# ---------------------------------------------------------------------------- 9. load/soak
def _full_queue(url: str) -> dict[str, Any]:
    """16 concurrent requests against ``--max-queue 2`` and a slow batching window."""
    import httpx

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            return await asyncio.gather(*[c.post("/v1/predict", json={"inputs": [ROW]}) for _ in range(16)])

    responses = asyncio.run(burst())
    busy = [r for r in responses if r.status_code == 503]
    return {"requests": len(responses), "ok": sum(r.status_code == 200 for r in responses), "503": len(busy),
            "retry_after": sorted({r.headers.get("retry-after", "") for r in busy}),
            "other": sorted({r.status_code for r in responses} - {200, 503})}


def load_soak(seconds: float = 60.0, soak_seconds: float = 600.0, levels: tuple[int, ...] = (1, 2, 4, 8, 16)
              ) -> dict[str, Any]:
    """Closed-loop load at each concurrency for ``seconds``, then ``soak_seconds`` at 4 with
    memory sampled before and after; and a full queue answering 503 with Retry-After."""
    sl = _serve_load()
    failures: list[str] = []
    with _server("--max-queue", "64") as (url, proc):
        bodies = sl._bodies(url)
        asyncio.run(sl._level(url, 4, min(5.0, seconds), bodies))  # warm-up
        per_level = {str(c): asyncio.run(sl._level(url, c, seconds, bodies)) for c in levels}
        before = rss_mb(proc.pid)
        soak = asyncio.run(sl._level(url, 4, soak_seconds, bodies))
        after = rss_mb(proc.pid)
    with _server("--max-queue", "2", "--batch-wait-ms", "1000") as (url, _):
        queue = _full_queue(url)
    errors = sum(r["errors"] for r in per_level.values()) + soak["errors"]
    one = per_level.get("1")
    ratio = one["p99_ms"] / one["p50_ms"] if one and one["p50_ms"] else None
    drift = (after - before) / before
    if errors:
        failures.append(f"{errors} errors under load")
    if ratio is None or ratio > 3:
        failures.append(f"p99/p50 at concurrency 1 is {ratio}")
    if abs(drift) >= 0.05:
        failures.append(f"memory drift over the soak {drift:.1%}")
    if queue["503"] == 0 or queue["retry_after"] != ["1"] or queue["other"]:
        failures.append(f"full queue: {queue}")
    return result(failures, seconds_per_level=seconds, levels=per_level,
                  p99_over_p50_at_1=round(ratio, 2) if ratio else None, soak_seconds=soak_seconds,
                  soak=soak, rss_mb_soak_start=round(before, 1), rss_mb_soak_end=round(after, 1),
                  memory_drift=round(drift, 4), full_queue=queue, errors=errors)
