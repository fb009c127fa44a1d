"""What `dlopt serve` says: its startup line (the real port, also with --port 0) and the 4xx
lines of near-miss requests (a misspelled key, a table row as an object, an integer beyond
int64, a misnamed multipart field), against a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest
from test_serve import _png
from test_serve_table import _linear_onnx, _post

ROW = [[[0.0] * 28] * 28]


@pytest.fixture(scope="module")
def url(lenet_model, running_server):
    with running_server(lenet_model, max_batch=4) as base:
        yield base


def test_serve_prints_where_it_listens_with_the_port_the_os_picked(lenet):
    proc = subprocess.Popen([sys.executable, "-m", "dlopt", "serve", str(lenet[1]), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # before: nothing, and the port was unknowable (a hang here would block the suite)
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        match = re.fullmatch(rf"serving {re.escape(str(lenet[1]))} on (http://127\.0\.0\.1:(\d+)) "
                             r"\(POST /v1/predict; GET /v1/health/live, .*\)\n", line)
        assert match and int(match[2]) > 0, line
        assert httpx.get(f"{match[1]}/v1/health/live", timeout=10).json() == {"status": "live"}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_a_misspelled_json_key_names_the_allowed_ones(url):
    resp = _post(url, {"input": ROW})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"] == ("unknown key 'body.input'; allowed: inputs (nested lists), "
                                     "inputs_npy (base64 of a .npy file)")


def test_an_integer_beyond_int64_is_a_number(url, lenet_model):
    big = 2 ** 64  # numpy keeps it as a Python object; it is a finite float32
    sample = np.zeros((1, 1, 28, 28))
    sample[0, 0, 0, 0] = float(big)
    row = [[[big] + [0] * 27] + [[0] * 28] * 27]
    resp = _post(url, {"inputs": [row]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == lenet_model.predict_raw(sample)[0].tolist()
    huge = _post(url, {"inputs": [[[[10 ** 400] + [0] * 27] + [[0] * 28] * 27]]})
    assert huge.status_code == 422 and huge.json()["error"] == "non_finite", huge.text


def test_a_misnamed_multipart_field_is_refused_naming_image(url, mnist_raw):
    png = _png(mnist_raw[0, 0])
    resp = httpx.post(f"{url}/v1/predict", files=[("image", ("a.png", png, "image/png")),
                                                  ("file", ("b.png", png, "image/png"))], timeout=30)
    assert resp.status_code == 422, resp.text  # before: 200 with one answer for two images
    assert resp.json()["detail"] == ("multipart field 'file' is not an image file; allowed: one or "
                                     "more files in fields named 'image'")


def test_table_rows_as_objects_keyed_by_column_name(tmp_path, running_server):
    table = np.array([[0.5, 1.0], [1.5, 3.0], [2.5, 5.0]])
    model = _linear_onnx(tmp_path, [{"op": "zscore"}], table, columns=("a", "b"))
    with running_server(model) as base:
        as_lists = _post(base, {"inputs": [[1.0, 2.0], [3.0, 4.0]]})
        as_objects = _post(base, {"inputs": [{"b": 2.0, "a": 1.0}, {"a": 3.0, "b": 4.0}]})
        assert as_lists.status_code == 200 and as_objects.json() == as_lists.json(), as_objects.text
        wrong = _post(base, {"inputs": [{"a": 1.0, "c": 2.0}]})
        assert wrong.status_code == 422
        assert wrong.json()["detail"] == ("inputs[0]: unknown column(s) 'c'; allowed: an object with "
                                          "the columns a, b (or a list in that order)")


def test_a_row_object_for_a_model_without_column_names_says_rows_are_lists(tmp_path, running_server):
    model = _linear_onnx(tmp_path, [{"op": "zscore"}], np.array([[0.5, 1.0], [1.5, 3.0]]))
    with running_server(model) as base:
        resp = _post(base, {"inputs": [{"f0": 1.0, "f1": 2.0}]})
    assert resp.status_code == 422, resp.text  # before: "inputs have shape (1,)"
    assert json.loads(resp.text)["detail"].startswith("a sample is (nested) lists of numbers, not an object")
