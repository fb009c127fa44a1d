"""``GET /v1/metadata`` over real HTTP on 127.0.0.1 tells a client what the model is, not where
the server keeps things: the run and the data file by name, no directories."""

from __future__ import annotations

import httpx
import torch

from dlopt.deploy import OnnxModel, export_onnx


def test_metadata_names_the_run_and_data_file_without_server_paths(tmp_path, running_server):
    torch.manual_seed(0)
    run = tmp_path / "secret" / "runs" / "table-run"
    dataset = {"name": f"csv:{tmp_path / 'secret' / 'rows.csv'}", "target": "y", "seed": 0,
               "data_dir": str(tmp_path / "secret" / "data")}
    path = tmp_path / "m.onnx"
    export_onnx(torch.nn.Linear(3, 2), torch.randn(2, 3), path, exporter="legacy",
                metadata={"source_run": str(run), "dataset": dataset})
    with running_server(OnnxModel.load(path)) as url:
        resp = httpx.get(f"{url}/v1/metadata", timeout=30)
    assert resp.status_code == 200, resp.text
    assert str(tmp_path) not in resp.text  # before: source_run, dataset name and data_dir in full
    model = resp.json()["model"]
    assert model["source_run"] == "table-run"
    assert model["dataset"] == {"name": "csv:rows.csv", "target": "y", "seed": 0}
    assert resp.json()["file"] == "m.onnx"
