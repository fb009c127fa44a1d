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
