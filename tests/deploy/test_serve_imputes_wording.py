"""`dlopt serve`'s 422 for a cell that is no number says what the model takes: null too where
its preprocessing imputes missing values (it takes them), never null where it does not."""

from __future__ import annotations

import numpy as np
from test_serve_table import _linear_onnx, _post


def test_a_string_cell_names_null_as_allowed_only_where_the_model_imputes(tmp_path, running_server):
    table = np.array([[0.5, 1.0], [np.nan, 3.0], [2.5, 5.0]])
    cases = {"impute": (table, "numbers, or null for a missing value (no strings or booleans)"),
             "zscore": (np.nan_to_num(table), "numbers (no strings, booleans or nulls)")}
    for op, (fitted_on, allowed) in cases.items():
        (tmp_path / op).mkdir()
        with running_server(_linear_onnx(tmp_path / op, [{"op": op}], fitted_on)) as url:
            resp = _post(url, {"inputs": [["abc", 1.0]]})
        assert resp.status_code == 422 and resp.json()["detail"] == f"inputs must be {allowed}", resp.text
