"""CLI friction around export and serve: a run directory given to ``dlopt serve`` says to
export it, ``dlopt export --out`` must name an .onnx file, and the server takes gray images as
``dlopt predict`` does, without their channel axis."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from dlopt.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def url(lenet_model, running_server):
    with running_server(lenet_model) as base:
        yield base


def _one_line(res, code: int) -> str:
    assert res.exit_code == code and res.output.count("\n") == 1, res.output
    return res.output.strip()


def test_serve_of_a_run_directory_says_to_export_it(trained_run):
    line = _one_line(runner.invoke(app, ["serve", str(trained_run), "--port", "0"]), 2)
    assert line == (f"error: {trained_run} is a training run directory; serve takes an .onnx file: export it "
                    f"first (dlopt export {trained_run} --out {trained_run / 'model.onnx'}) and serve that file")


def test_serve_of_a_directory_holding_an_onnx_file_names_it(tmp_path, lenet):
    (tmp_path / "m.onnx").write_bytes(lenet[1].read_bytes())
    line = _one_line(runner.invoke(app, ["serve", str(tmp_path), "--port", "0"]), 2)
    assert line == f"error: {tmp_path} is a directory; serve one of its .onnx files: {tmp_path / 'm.onnx'}"


@pytest.mark.parametrize("name", ["x.pt", "model", "model.onnx.tmp"])
def test_export_refuses_an_out_that_is_not_onnx_before_any_work(trained_run, tmp_path, name):
    out = tmp_path / name
    line = _one_line(runner.invoke(app, ["export", str(trained_run), "--out", str(out)]), 2)
    assert line == (f"error: --out {out}: the file is ONNX; allowed: a path ending in .onnx, "
                    f"e.g. {out.with_suffix('.onnx')}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("count", [None, 3])  # one (H, W) image, or (N, H, W)
def test_server_takes_gray_images_without_their_channel_axis(url, mnist_raw, count):
    images = mnist_raw[:count or 1]  # (N, 1, 28, 28)
    gray = images[0, 0] if count is None else images[:, 0]
    got = httpx.post(f"{url}/v1/predict", json={"inputs": gray.tolist()}, timeout=30)
    want = httpx.post(f"{url}/v1/predict", json={"inputs": images.tolist()}, timeout=30)
    assert got.status_code == 200, got.text
    assert got.json() == want.json() and len(got.json()["predictions"]) == len(images)


def test_server_still_refuses_a_gray_image_of_another_size(url):
    res = httpx.post(f"{url}/v1/predict", json={"inputs": np.zeros((27, 28)).tolist()}, timeout=30)
    assert res.status_code == 422 and res.json()["error"] == "bad_shape"
    assert "allowed: (N, 1, 28, 28)" in res.json()["detail"]
