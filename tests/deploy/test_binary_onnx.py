"""A single-output (bce) classifier through ONNX: its logit is the sigmoid of class 1, as
training scores it, not a softmax over one column (which always answered class 0)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dlopt.deploy import export_onnx, predict_onnx


def test_a_single_logit_model_predicts_class_1_where_its_sigmoid_is_above_one_half(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(8, 1).eval()
    x = torch.randn(64, 8)
    path = tmp_path / "binary.onnx"
    export_onnx(model, x[:1], path, metadata={"class_names": ["no", "yes"]}, check_inputs=x)

    pred, proba = predict_onnx(path, x.numpy())
    with torch.inference_mode():
        p1 = torch.sigmoid(model(x))[:, 0].numpy()
    assert 0 < pred.sum() < len(pred)  # both classes occur, so the test can tell them apart
    np.testing.assert_array_equal(pred, (p1 > 0.5).astype(pred.dtype))
    np.testing.assert_allclose(proba, np.stack([1 - p1, p1], axis=1), atol=1e-6)
