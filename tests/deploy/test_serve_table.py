"""Serving table models over real HTTP on 127.0.0.1: JSON rows hold strings in the text columns
a run label-encodes (answered as ``dlopt predict`` answers the same CSV rows, unseen categories
included) and ``null`` where its preprocessing imputes missing values; wrong cell types get a
422 naming the column."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.data import Preprocessor
from dlopt.deploy import OnnxModel, export_onnx, export_run
from dlopt.train.inputs_raw import read_raw_input

CODES = ("10", "red", "blue")
ROWS = [[3.0, 1.0, "red"], [None, 4.0, "10"], [5.0, 6.0, "never seen"], [None, 2.0, " blue "]]


@pytest.fixture(scope="module")
def table_model(tmp_path_factory) -> OnnxModel:
    """A one-epoch MLP on a CSV whose column a has missing cells and column code is text."""
    tmp = tmp_path_factory.mktemp("table")
    rows = "".join(f"{'' if i % 6 == 0 else i},{i % 7},{CODES[i % 3]},{i % 2}\n" for i in range(60))
    (tmp / "train.csv").write_text("a,b,code,y\n" + rows)
    cfg = {"name": "run", "model": {"name": "mlp", "width": 8, "depth": 1},
           "data": {"name": f"csv:{tmp / 'train.csv'}", "target": "y",
                    "preprocess": [{"op": "impute"}, {"op": "label_encode"}]},
           "train": {"epochs": 1, "batch_size": 16, "progress": False, "threads": 1}}
    (tmp / "run.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["train", str(tmp / "run.yaml"), "--run-dir", str(tmp / "run"),
                                   "--device", "cpu", "--threads", "1"])
    assert res.exit_code == 0, res.output
    export_run(tmp / "run", tmp / "table.onnx", exporter="legacy")
    return OnnxModel.load(tmp / "table.onnx")


@pytest.fixture(scope="module")
def table_url(table_model, running_server):
    with running_server(table_model, max_batch=8) as url:
        yield url


def _post(url: str, body: dict) -> httpx.Response:
    # json.dumps writes Infinity for inf (as Python clients do); httpx's json= refuses it
    return httpx.post(f"{url}/v1/predict", content=json.dumps(body), timeout=30,
                      headers={"content-type": "application/json"})


def test_rows_with_text_and_nulls_are_answered_as_dlopt_predict_answers_them(table_model, table_url, tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text("".join(",".join("" if v is None else str(v) for v in row) + "\n" for row in ROWS))
    x = read_raw_input(csv, table_model.metadata.raw_shape, categories=table_model.preprocessor.categories)
    pred, proba = table_model.predict_raw(x)
    resp = _post(table_url, {"inputs": ROWS})
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == pred.tolist()
    np.testing.assert_allclose(resp.json()["probabilities"], proba, rtol=0, atol=1e-6)
    one = _post(table_url, {"inputs": ROWS[0]})  # one row without the batch axis
    assert one.status_code == 200 and one.json()["predictions"] == pred[:1].tolist(), one.text


@pytest.mark.parametrize(("inputs", "detail"), [
    ([[3.0, "1", "red"]], "column 1 ('b') holds \"1\"; allowed: numbers or null (missing)"),
    ([[3.0, 1.0, 10]], "column 2 ('code') holds 10; allowed: text"),
    ([[3.0, 1.0, None]], "column 2 ('code') holds null; allowed: text"),
    ([[True, 1.0, "red"]], "column 0 ('a') holds true; allowed: numbers"),
    ([[float("inf"), 1.0, "red"]], "1 NaN/Inf value(s)"),
    ([[3.0, 1.0, "red"], [3.0, "red"]], "inputs have shape (2,)"),
    ([[3.0, [1.0], "red"]], "column 1 ('b') holds [1.0]"),
    ([[3.0, 1.0]], "inputs have shape (1, 2)"),
])
def test_wrong_cells_get_a_422_naming_the_column(table_url, inputs, detail):
    resp = _post(table_url, {"inputs": inputs})
    assert resp.status_code == 422 and detail in resp.json()["detail"], resp.text


def test_inputs_npy_is_refused_for_a_model_with_text_columns(table_url):
    from test_serve import _npy_b64

    resp = _post(table_url, {"inputs_npy": _npy_b64(np.zeros((1, 3), np.float32))})
    assert resp.status_code == 422, resp.text
    assert "inputs_npy takes numbers only, but this model has text column(s) 2 ('code')" in resp.json()["detail"]


def _linear_onnx(tmp_path: Path, steps: list[dict], table: np.ndarray, columns: tuple[str, ...] = ()) -> OnnxModel:
    """A Linear model behind preprocessing ``steps`` fitted on ``table`` (no training needed);
    ``columns``: the raw table's column names, as a CSV header gives them."""
    pre = Preprocessor.build(steps, feature_names=columns).fit(table)
    path = tmp_path / "linear.onnx"
    torch.manual_seed(0)
    export_onnx(torch.nn.Linear(table.shape[1], 3), torch.from_numpy(pre.transform(table[:2])), path,
                metadata={"preprocess": pre, "class_names": ["a", "b", "c"]}, exporter="legacy")
    return OnnxModel.load(path)


def test_an_imputing_model_takes_null_and_nan_but_never_inf(tmp_path, running_server):
    from test_serve import _npy_b64

    model = _linear_onnx(tmp_path, [{"op": "impute"}], np.array([[0.5, 1.0], [np.nan, 3.0], [2.5, 5.0]]))
    with running_server(model) as url:
        resp = _post(url, {"inputs": [[None, 2.0], [1.0, None]]})
        assert resp.status_code == 200, resp.text
        np.testing.assert_allclose(resp.json()["probabilities"],
                                   model.predict_raw(np.array([[np.nan, 2.0], [1.0, np.nan]]))[1], atol=1e-6)
        nan_npy = _post(url, {"inputs_npy": _npy_b64(np.array([[np.nan, 2.0], [1.0, np.nan]]))})
        assert nan_npy.json() == resp.json()
        for body in ({"inputs": [[None, float("inf")]]}, {"inputs_npy": _npy_b64(np.array([[np.inf, 1.0]]))}):
            bad = _post(url, body)
            assert bad.status_code == 422 and bad.json()["error"] == "non_finite", bad.text


def test_a_model_without_impute_still_refuses_null(tmp_path, running_server):
    """A text model with no imputation: null is no value, in a number column or a text one."""
    table = np.array([[0.5, "red"], [1.5, "blue"], [2.5, "red"], [3.5, "green"]], dtype=object)
    model = _linear_onnx(tmp_path, [{"op": "label_encode"}], table)
    with running_server(model) as url:
        assert _post(url, {"inputs": [[1.0, "blue"], [2.0, "green"]]}).status_code == 200
        bad = _post(url, {"inputs": [[None, "blue"]]})
        assert bad.status_code == 422 and "column 0 holds null; allowed: numbers" in bad.json()["detail"], bad.text


def test_fuzzed_rows_give_a_batch_or_a_4xx(tmp_path):
    """Any JSON value in any cell: a batch the saved preprocessing takes, or an ApiError 4xx."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from dlopt.deploy._inputs import ApiError, InputSpec, decode_json

    table = np.array([[0.5, "red"], [np.nan, "blue"], [2.5, "red"]], dtype=object)
    model = _linear_onnx(tmp_path, [{"op": "impute"}, {"op": "label_encode"}], table)
    spec = InputSpec((2,), 4, categories=model.preprocessor.categories, missing=model.imputes)
    leaves = st.one_of(st.floats(), st.integers(-(2**1100), 2**1100), st.booleans(), st.none(), st.text(max_size=3))
    values = st.one_of(st.recursive(leaves, lambda inner: st.lists(inner, max_size=3), max_leaves=10),
                       st.lists(st.tuples(st.floats(-1e3, 1e3) | st.none() | leaves,
                                          st.sampled_from(["red", " blue"]) | st.text(max_size=3) | leaves),
                                min_size=1, max_size=4))
    served = []

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(values)
    def one(inputs) -> None:
        try:
            x = decode_json(json.dumps({"inputs": inputs}).encode(), spec)
        except ApiError as err:
            assert 400 <= err.status < 500
            return
        assert x.shape[1:] == (2,)
        assert np.isfinite(model.preprocess(x)).all()
        served.append(len(x))

    one()
    assert len(served) > 10  # the fuzzer reached the accepting path too


def test_serve_check_sends_a_text_tables_test_rows_as_json(table_model, table_url):
    """The pipeline's serve_check stage: a CSV with text and missing cells goes as JSON rows
    (inputs_npy takes numbers only) and is answered as local ONNX Runtime answers it."""
    from dlopt.pipeline._stages_deploy import _predict_body, _raw_samples

    x, _ = _raw_samples(table_model.path, 6)
    assert x.dtype == object
    resp = _post(table_url, _predict_body(x))
    assert resp.status_code == 200, resp.text
    np.testing.assert_allclose(resp.json()["probabilities"], table_model.predict_raw(x)[1], rtol=0, atol=1e-6)
