"""Fuzz the real server with >= 1,000 hypothesis-built requests shaped by its OpenAPI schema:
no response may be a 5xx, every error is JSON, and the server is still ready afterwards."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

EXAMPLES = 1100
RAW_SHAPE = (1, 28, 28)
SENT = {"requests": 0, "statuses": {}}


@pytest.fixture(scope="module")
def fuzz_server(lenet_model, running_server):
    # small limits so the fuzzer reaches the 413 and batch-size paths too
    with running_server(lenet_model, max_batch=8, max_body_mb=0.25) as url:
        yield url


@pytest.fixture(scope="module")
def http(fuzz_server):
    with httpx.Client(base_url=fuzz_server, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def openapi(http) -> dict[str, Any]:
    return http.get("/openapi.json").json()


# ---------------------------------------------------------------------------- values
_LEAVES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70), st.booleans(),
    st.none(), st.text(max_size=4),
)
_ANY_JSON = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=12)


@st.composite
def _arrays(draw: Any) -> np.ndarray:
    """Arrays near the model's raw shape: right, off by one, missing or extra axes, odd values."""
    ndim = draw(st.sampled_from([1, 3, 4, 4, 4, 5]))
    base = (draw(st.integers(0, 9)), *RAW_SHAPE) if ndim >= 4 else RAW_SHAPE[-ndim:]
    shape = tuple(d if draw(st.integers(0, 5)) else draw(st.integers(0, 30)) for d in base)[:ndim]
    shape = shape + (1,) * (ndim - len(shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(["float64", "float32", "int64", "uint8", "bool", "float16"]))
    with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow small dtypes
        x = (rng.uniform(-10, 300, shape) * draw(st.sampled_from([1.0, 1e30, 1e-30]))).astype(dtype)
    if x.size and draw(st.booleans()) and x.dtype.kind == "f":
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e39]))
    return x


def _npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=x.dtype == object)
    return buf.getvalue()


_NPY_BYTES = st.one_of(
    _arrays().map(_npy),
    _arrays().map(_npy).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),  # truncated
    st.builds(lambda: _npy(np.array([{"a": 1}], dtype=object))),
    st.builds(lambda: _npy(np.array([["ab"]]))),
    st.binary(max_size=64),
)


@st.composite
def _image_bytes(draw: Any) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=200))
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16"]))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "BMP"]))
    size = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    img = Image.new(mode, size, color=draw(st.integers(0, 255)))
    buf = io.BytesIO()
    try:
        img.save(buf, fmt)
    except (OSError, ValueError, KeyError):  # a format cannot store that mode: send PNG
        buf = io.BytesIO()
        img.convert("L").save(buf, "PNG")
    data = buf.getvalue()
    return data[: draw(st.integers(1, len(data)))] if draw(st.integers(0, 3)) == 0 else data


def _for_schema(schema: dict[str, Any]) -> st.SearchStrategy:
    """A value strategy for one JSON-schema fragment (anyOf: any branch)."""
    if "anyOf" in schema:
        return st.one_of(*[_for_schema(s) for s in schema["anyOf"]])
    by_type = {
        "array": st.one_of(_arrays().map(lambda x: x.tolist()), st.lists(_ANY_JSON, max_size=3)),
        "string": st.one_of(_NPY_BYTES.map(lambda b: base64.b64encode(b).decode()), st.text(max_size=20)),
        "null": st.none(),
    }
    return by_type.get(schema.get("type"), _ANY_JSON)


# ----------------------------------------------------------------------------- requests
def _json_body(openapi: dict[str, Any]) -> st.SearchStrategy:
    ref = openapi["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    props = ref["properties"]
    objects = st.fixed_dictionaries({}, optional={k: _for_schema(v) for k, v in props.items()})
    with_extra = st.tuples(objects, st.dictionaries(st.text(max_size=5), _ANY_JSON, max_size=2)).map(
        lambda t: {**t[1], **t[0]})
    return st.one_of(objects, objects, with_extra, _ANY_JSON).map(
        lambda obj: json.dumps(obj).encode())  # NaN/Infinity written literally on purpose


@st.composite
def _requests(draw: Any, openapi: dict[str, Any]) -> dict[str, Any]:
    content = openapi["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    kind = draw(st.sampled_from([*content, "other", "other-route"]))
    if kind == "application/json":
        ctype = draw(st.sampled_from(["application/json", "application/json; charset=utf-8"]))
        return {"method": "POST", "url": "/v1/predict", "content": draw(_json_body(openapi)),
                "headers": {"content-type": ctype}}
    if kind == "multipart/form-data":
        field = st.sampled_from(list(content[kind]["schema"]["properties"]) + ["file", "x"])
        files = draw(st.lists(st.tuples(field, _image_bytes()), max_size=10))
        return {"method": "POST", "url": "/v1/predict",
                "files": [(name, (f"f{i}", data, "application/octet-stream")) for i, (name, data) in enumerate(files)]}
    if kind.startswith("image/"):
        return {"method": "POST", "url": "/v1/predict", "content": draw(_image_bytes()),
                "headers": {"content-type": kind}}
    if kind == "other":
        ctype = draw(st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "",
                                      "multipart/form-data; boundary=zz", "application/xml"]))
        return {"method": "POST", "url": "/v1/predict", "content": draw(st.binary(max_size=300)),
                "headers": {"content-type": ctype}}
    path = draw(st.sampled_from([*openapi["paths"], "/", "/v1/models", "/v1/predict/../metadata"]))
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    return {"method": method, "url": path, "content": draw(st.binary(max_size=50))}


# --------------------------------------------------------------------------------- test
def test_fuzz_no_5xx_and_still_ready(http, openapi):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(_requests(openapi))
    def one(req: dict[str, Any]) -> None:
        resp = http.request(**req)
        SENT["requests"] += 1
        SENT["statuses"][resp.status_code] = SENT["statuses"].get(resp.status_code, 0) + 1
        assert resp.status_code < 500, (req.get("url"), resp.status_code, resp.text[:300])
        if resp.status_code >= 400:
            assert set(resp.json()) == {"error", "detail"}, resp.text[:300]

    one()
    assert SENT["requests"] >= 1000
    statuses = SENT["statuses"]
    assert statuses.get(200, 0) > 0 and statuses.get(422, 0) > 0  # the fuzzer reached both paths
    assert http.get("/v1/health/ready").status_code == 200
    ok = http.post("/v1/predict", json={"inputs": np.zeros((1, *RAW_SHAPE)).tolist()})
    assert ok.status_code == 200
