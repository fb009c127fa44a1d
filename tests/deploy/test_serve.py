"""The prediction server against a real uvicorn on 127.0.0.1: valid predictions equal local
ONNX Runtime, every invalid case gets its 4xx, 413 before the body is read, 503 + Retry-After
when the queue is full, 504 on timeout, micro-batching isolation, and the ``dlopt serve`` CLI."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import signal
import socket
import subprocess
import sys
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from dlopt.deploy import OnnxModel, ServeSettings, export_onnx
from dlopt.deploy._serve import open_model


@pytest.fixture(scope="module")
def server(lenet_model, running_server):
    """Default limits except a small max batch."""
    with running_server(lenet_model, max_batch=16) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def _npy_b64(x: np.ndarray, **kw) -> str:
    buf = io.BytesIO()
    np.save(buf, x, **kw)
    return base64.b64encode(buf.getvalue()).decode()


def _png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def _assert_same(resp: httpx.Response, model: OnnxModel, x_raw: np.ndarray) -> None:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    pred, proba = model.predict_raw(x_raw)
    assert body["predictions"] == pred.tolist()
    np.testing.assert_allclose(np.array(body["probabilities"]), proba, rtol=0, atol=1e-6)
    if model.metadata.class_names:
        assert body["labels"] == [model.metadata.class_names[i] for i in pred]
    else:
        assert "labels" not in body


class _Square(torch.nn.Module):
    """Squares its input first: finite float32 inputs near 1e20 overflow to Inf inside."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x * x)


@pytest.fixture(scope="module")
def square_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("square") / "square.onnx"
    export_onnx(_Square(), torch.randn(2, 4), path, exporter="legacy")  # legacy: fast here
    return OnnxModel.load(path)


# ------------------------------------------------------------------------------- valid
def test_health_metadata_and_openapi(client, lenet_model):
    assert client.get("/v1/health/live").json() == {"status": "live"}
    assert client.get("/v1/health/ready").json() == {"status": "ready"}
    meta = client.get("/v1/metadata").json()
    assert meta["model"]["class_names"] == lenet_model.metadata.class_names
    assert meta["input"]["raw_shape"] == [1, 28, 28] and meta["limits"]["max_batch"] == 16
    assert len(meta["sha256"]) == 64
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data", "image/png", "image/jpeg"} <= set(body)
    assert client.get("/docs").status_code == 404  # no UI pulling scripts from a CDN


def test_json_lists_equal_local_onnxruntime(client, lenet_model, mnist_raw):
    x = mnist_raw[:7]
    _assert_same(client.post("/v1/predict", json={"inputs": x.tolist()}), lenet_model, x)
    one = client.post("/v1/predict", json={"inputs": x[0].tolist()})  # one sample, no batch axis
    _assert_same(one, lenet_model, x[:1])


@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64", "int64"])
def test_base64_npy_equals_local_onnxruntime(client, lenet_model, mnist_raw, dtype):
    x = mnist_raw[:5].astype(dtype)
    _assert_same(client.post("/v1/predict", json={"inputs_npy": _npy_b64(x)}), lenet_model, x)


def test_image_uploads_apply_the_saved_preprocessing(client, lenet_model, mnist_raw):
    imgs = [mnist_raw[i, 0] for i in range(3)]
    files = [("image", (f"{i}.png", _png(a), "image/png")) for i, a in enumerate(imgs)]
    _assert_same(client.post("/v1/predict", files=files), lenet_model, mnist_raw[:3])
    raw = client.post("/v1/predict", content=_png(imgs[0]), headers={"content-type": "image/png"})
    _assert_same(raw, lenet_model, mnist_raw[:1])
    # an RGB JPEG of another size is converted to grayscale and resized like PIL does locally
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3)).astype(np.uint8)
    data = _png(rgb, "JPEG")
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("L").resize((28, 28), Image.Resampling.BILINEAR))
    resp = client.post("/v1/predict", files=[("image", ("a.jpg", data, "image/jpeg"))])
    _assert_same(resp, lenet_model, expected[None, None])
    # a 16-bit grayscale PNG is scaled to 8 bits (as training reads it), not clipped to 255
    wide = imgs[0].astype(np.uint16) * 257
    resp = client.post("/v1/predict", content=_png(wide), headers={"content-type": "image/png"})
    _assert_same(resp, lenet_model, mnist_raw[:1])


def test_regression_model_returns_predictions_only(tmp_path, running_server):
    import torch

    from dlopt.data import Preprocessor
    from dlopt.models import create_model

    rng = np.random.default_rng(0)
    table = rng.normal(5.0, 3.0, (64, 8))
    pre = Preprocessor.build([{"op": "zscore"}]).fit(table)
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=(8,), num_classes=1)
    path = tmp_path / "reg.onnx"
    export_onnx(model, torch.from_numpy(pre.transform(table[:2])), path,
                metadata={"task": "regression", "preprocess": pre}, exporter="legacy")  # fast
    local = OnnxModel.load(path)
    with running_server(local) as url:
        resp = httpx.post(f"{url}/v1/predict", json={"inputs": table[:4].tolist()})
    assert resp.status_code == 200 and set(resp.json()) == {"predictions"}
    np.testing.assert_allclose(resp.json()["predictions"], local.predict_raw(table[:4])[0], atol=1e-6)


# ----------------------------------------------------------------------------- invalid
def _pickled_npy() -> str:
    return _npy_b64(np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _lying_npy() -> str:
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 1, 28, 28), np.float32))
    raw = buf.getvalue().replace(b"(1, 1, 28, 28)", b"(9, 1, 28, 28)")  # header claims 9 samples
    return base64.b64encode(raw).decode()


ROW = [[[0.0] * 28] * 28]
INVALID_JSON = {
    "malformed json": (b'{"inputs": [', 400, "bad_json"),
    "not an object": (b"[1, 2]", 422, "bad_request"),
    "no inputs": (b"{}", 422, "bad_request"),
    "both inputs": (json.dumps({"inputs": [ROW], "inputs_npy": "AA=="}).encode(), 422, "bad_request"),
    "unknown key": (json.dumps({"inputs": [ROW], "extra": 1}).encode(), 422, "bad_request"),
    "inputs not a list": (b'{"inputs": "abc"}', 422, "bad_request"),
    "wrong shape": (json.dumps({"inputs": [[1.0, 2.0]]}).encode(), 422, "bad_shape"),
    "ragged": (json.dumps({"inputs": [ROW, [[0.0]]]}).encode(), 422, "bad_shape"),
    "empty batch": (b'{"inputs": []}', 422, "bad_shape"),
    "strings": (json.dumps({"inputs": [[["a"] * 28] * 28]}).encode(), 422, "bad_dtype"),
    "booleans": (json.dumps({"inputs": [[[True] * 28] * 28]}).encode(), 422, "bad_dtype"),
    "a boolean among numbers": (json.dumps({"inputs": [[[True] + [0.0] * 27] + [[0.0] * 28] * 27]}).encode(),
                                422, "bad_dtype"),
    "nulls": (json.dumps({"inputs": [[[None] * 28] * 28]}).encode(), 422, "bad_dtype"),
    "NaN": (json.dumps({"inputs": [[[float("nan")] * 28] * 28]}).encode(), 422, "non_finite"),
    "Infinity": (json.dumps({"inputs": [[[float("inf")] * 28] * 28]}).encode(), 422, "non_finite"),
    "beyond float32": (json.dumps({"inputs": [[[1e39] * 28] * 28]}).encode(), 422, "non_finite"),
    "batch too large": (json.dumps({"inputs": [ROW] * 17}).encode(), 422, "bad_batch"),
    "deep nesting": (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "bad_json"),
    "bad base64": (b'{"inputs_npy": "not base64!"}', 400, "bad_base64"),
    "not npy": (json.dumps({"inputs_npy": base64.b64encode(b"hello").decode()}).encode(), 400, "bad_npy"),
    "pickled npy": (json.dumps({"inputs_npy": _pickled_npy()}).encode(), 422, "bad_dtype"),
    "npy header lies": (json.dumps({"inputs_npy": _lying_npy()}).encode(), 400, "bad_npy"),
}


@pytest.mark.parametrize("case", list(INVALID_JSON))
def test_invalid_json_bodies_get_their_4xx(client, case):
    body, status, code = INVALID_JSON[case]
    resp = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == code and resp.json()["detail"]


def test_invalid_media_and_routes_get_their_4xx(client):
    def post(**kw):
        return client.post("/v1/predict", **kw)

    cases = [
        (post(content=b"1,2", headers={"content-type": "text/csv"}), 415, "unsupported_media_type"),
        (post(content=b"{}"), 415, "unsupported_media_type"),  # no content type at all
        (post(content=b"\x89PNG broken", headers={"content-type": "image/png"}), 415, "bad_image"),
        (post(files=[("image", ("a.gif", _png(np.zeros((4, 4), np.uint8), "GIF"), "image/gif"))]), 415, "bad_image"),
        (post(files=[("other", ("a.png", _png(np.zeros((4, 4), np.uint8)), "image/png"))]), 422, "bad_request"),
        (post(files=[("image", ("a.png", b"", "image/png"))]), 415, "bad_image"),
        (client.get("/v1/predict"), 405, "method_not_allowed"),
        (client.get("/v1/models/load"), 404, "not_found"),
        (client.put("/v1/metadata", content=b"x"), 405, "method_not_allowed"),
    ]
    for resp, status, code in cases:
        assert (resp.status_code, resp.json()["error"]) == (status, code), resp.text


def test_image_upload_to_a_non_image_model_is_415(tmp_path, running_server):
    from dlopt.models import create_model

    path = tmp_path / "seq.onnx"
    export_onnx(create_model("mlp", input_shape=(40,), num_classes=3), np.zeros((2, 40), np.float32), path,
                exporter="legacy")
    with running_server(OnnxModel.load(path)) as url:
        png = _png(np.zeros((4, 4), np.uint8))
        resp = httpx.post(f"{url}/v1/predict", files=[("image", ("a.png", png, "image/png"))])
    assert resp.status_code == 415 and resp.json()["error"] == "not_an_image_model"


def test_non_finite_model_output_is_422(square_model, running_server):
    with running_server(square_model) as url:
        resp = httpx.post(f"{url}/v1/predict", json={"inputs": [[1e20, 0, 0, 0]]})  # finite in float32
        ok = httpx.post(f"{url}/v1/predict", json={"inputs": [[1.0, 2.0, 3.0, 4.0]]})
    assert resp.status_code == 422 and resp.json()["error"] == "non_finite_output"
    _assert_same(ok, square_model, np.array([[1.0, 2.0, 3.0, 4.0]]))


# ------------------------------------------------------------------------ 413 raw socket
def _raw_exchange(url: str, head: str, chunks: list[bytes] = (), timeout: float = 20.0) -> str:
    """Send a hand-written request (headers, then ``chunks``) and return the status line."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        s.sendall(head.encode())
        try:
            for chunk in chunks:
                s.sendall(chunk)
        except OSError:  # the server answered and closed: stop sending
            pass
        data = b""
        while b"\r\n" not in data:
            part = s.recv(4096)
            if not part:
                break
            data += part
    return data.split(b"\r\n")[0].decode()


def test_413_declared_length_refused_before_the_body_is_sent(server):
    head = ("POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 104857600\r\n\r\n")  # 100 MB announced, none sent
    assert _raw_exchange(server, head).startswith("HTTP/1.1 413")
    bad = "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n"
    assert _raw_exchange(server, bad).startswith("HTTP/1.1 400")


def test_413_chunked_body_counted_while_streaming(lenet_model, running_server):
    with running_server(lenet_model, max_body_mb=0.0625) as url:  # 64 KiB
        head = ("POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"  # 16 KiB chunks, never terminated
        assert _raw_exchange(url, head, [chunk] * 8).startswith("HTTP/1.1 413")
        resp = httpx.post(f"{url}/v1/predict", content=b"[" * 70_000, headers={"content-type": "application/json"})
        assert resp.status_code == 413 and resp.json()["error"] == "body_too_large"
        assert httpx.get(f"{url}/v1/health/ready").status_code == 200


# ------------------------------------------------------------------ queue, timeout, batching
def test_full_queue_answers_503_with_retry_after(lenet_model, mnist_raw, running_server):
    body = {"inputs": mnist_raw[:1].tolist()}

    async def load(url: str):
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            tasks = [asyncio.create_task(c.post("/v1/predict", json=body)) for _ in range(8)]
            await asyncio.sleep(0.3)
            live = await c.get("/v1/health/live")  # the loop answers while inference waits
            pending = sum(not t.done() for t in tasks)
            return live, pending, await asyncio.gather(*tasks)

    # a 1.5 s micro-batching window makes every request slow; only 2 may be in progress
    with running_server(lenet_model, max_queue=2, batch_wait_ms=1500) as url:
        live, pending, responses = asyncio.run(load(url))
        after = httpx.post(f"{url}/v1/predict", json=body)
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 2 and codes.count(503) == 6
    for r in responses:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and r.json()["error"] == "queue_full"
        else:
            _assert_same(r, lenet_model, mnist_raw[:1])
    assert live.status_code == 200 and pending >= 2
    _assert_same(after, lenet_model, mnist_raw[:1])


def test_timeout_answers_504_and_the_server_recovers(lenet_model, mnist_raw, running_server):
    with running_server(lenet_model, timeout_s=0.2, batch_wait_ms=1000) as url:
        resp = httpx.post(f"{url}/v1/predict", json={"inputs": mnist_raw[:1].tolist()})
        assert resp.status_code == 504 and resp.json()["error"] == "timeout"
        assert httpx.get(f"{url}/v1/health/ready").status_code == 200


def test_micro_batching_isolates_bad_requests(square_model, running_server):
    rng = np.random.default_rng(0)
    good = [rng.normal(size=(n, 4)) for n in (1, 3, 2, 1, 4)]
    bad = [
        ({"inputs": [[float("nan")] * 4]}, "non_finite"),
        ({"inputs": [[1.0, 2.0]]}, "bad_shape"),
        ({"inputs": [[1e20, 1.0, 1.0, 1.0]]}, "non_finite_output"),  # valid input: joins a batch
    ]

    async def fire(url: str):
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            reqs = [c.post("/v1/predict", json={"inputs": x.tolist()}) for x in good]
            # json.dumps writes NaN literally, as a careless client would
            reqs += [c.post("/v1/predict", content=json.dumps(b), headers={"content-type": "application/json"})
                     for b, _ in bad]
            return await asyncio.gather(*reqs)

    with running_server(square_model, batch_wait_ms=300, batch_max=64) as url:
        responses = asyncio.run(fire(url))
    for resp, x in zip(responses, good):
        _assert_same(resp, square_model, x)
    for resp, (_, code) in zip(responses[len(good):], bad):
        assert resp.status_code == 422 and resp.json()["error"] == code


# ---------------------------------------------------------------------------------- CLI
def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    out = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":  # 0A = LISTEN
                out.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return out


def test_dlopt_serve_cli_binds_loopback_and_stops_cleanly(lenet, lenet_model, mnist_raw, free_socket, wait_ready):
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([sys.executable, "-m", "dlopt", "serve", str(lenet[1]), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        _assert_same(httpx.post(f"{url}/v1/predict", json={"inputs": mnist_raw[:2].tolist()}),
                     lenet_model, mnist_raw[:2])
        try:
            assert _listening_addresses(port) == {"127.0.0.1"}
        except FileNotFoundError:
            pass  # not Linux
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err  # a stop signal is a normal end


def test_dlopt_serve_cli_unusable_address_or_log_level_is_one_line(lenet, free_socket):
    taken = free_socket()  # bound and listening: the port is in use
    taken.listen()
    try:
        cases = [(["--port", str(taken.getsockname()[1])], 1, "Address already in use"),
                 (["--host", "nosuchhost.invalid"], 2, "cannot resolve it"),
                 (["--log-level", "bogus"], 2, "allowed: critical, error, warning")]
        for args, code, message in cases:
            done = subprocess.run([sys.executable, "-m", "dlopt", "serve", str(lenet[1]), *args],
                                  capture_output=True, text=True, timeout=60)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == code and len(lines) == 1 and message in lines[0], done.stderr
    finally:
        taken.close()


def test_dlopt_serve_cli_refuses_a_bad_model_file(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"nope")
    done = subprocess.run([sys.executable, "-m", "dlopt", "serve", str(bad), "--port", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "x.onnx is not a valid ONNX file" in done.stderr


def test_served_session_has_no_memory_plan_per_batch_size(lenet, lenet_model):
    """Requests come at every batch size: the server's session keeps no per-shape plan,
    with the same outputs as the default session's, at every batch size it may see."""
    served = open_model(lenet[1], ServeSettings(threads=1))
    assert served.session.get_session_options().enable_mem_pattern is False
    assert served.session.get_session_options().intra_op_num_threads == 1
    assert lenet_model.session.get_session_options().enable_mem_pattern is True
    x = np.random.default_rng(0).random((5, *lenet_model.input_shape), dtype=np.float32)
    for n in (1, 5, 3):
        np.testing.assert_allclose(served.run(x[:n]), lenet_model.run(x[:n]), rtol=1e-5, atol=1e-6)
