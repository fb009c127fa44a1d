"""The server takes image batches in the layout the npz reader took for training: channels-last
``(N, H, W, C)`` is transposed to the model's ``(C, H, W)``; other shapes still get a 422."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from dlopt.deploy._inputs import ApiError, InputSpec, decode_json

SPEC = InputSpec(raw_shape=(3, 4, 5), max_batch=8)


def _npy_body(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return json.dumps({"inputs_npy": base64.b64encode(buf.getvalue()).decode()}).encode()


def test_channels_last_batches_and_samples_are_transposed() -> None:
    first = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    last = first.transpose(0, 2, 3, 1)
    want = decode_json(json.dumps({"inputs": first.tolist()}).encode(), SPEC)
    assert np.array_equal(decode_json(json.dumps({"inputs": last.tolist()}).encode(), SPEC), want)
    assert np.array_equal(decode_json(_npy_body(last), SPEC), want)
    assert np.array_equal(decode_json(json.dumps({"inputs": last[0].tolist()}).encode(), SPEC), want[:1])


def test_other_layouts_are_still_refused() -> None:
    with pytest.raises(ApiError) as err:
        decode_json(json.dumps({"inputs": np.zeros((2, 5, 4, 3)).tolist()}).encode(), SPEC)
    assert err.value.status == 422 and err.value.code == "bad_shape"


def test_the_python_api_transposes_channels_last_inputs(tmp_path) -> None:
    """``predict_onnx`` / ``OnnxModel.predict_raw`` take channels-last arrays as ``dlopt predict``
    and the server do: transposed to (C, H, W), not reshaped (which scrambles the pixels)."""
    import torch

    from dlopt.deploy import OnnxModel, export_onnx, predict_onnx

    torch.manual_seed(0)
    path = tmp_path / "rgb.onnx"
    export_onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(60, 3)), torch.zeros(2, *SPEC.raw_shape),
                path, exporter="legacy")
    first = np.random.default_rng(0).random((4, *SPEC.raw_shape), dtype=np.float32)
    want = OnnxModel.load(path).predict_raw(first)[1]
    np.testing.assert_allclose(predict_onnx(path, first.transpose(0, 2, 3, 1))[1], want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(predict_onnx(path, first[0].transpose(1, 2, 0))[1], want[:1], rtol=0, atol=1e-6)
