"""Training scores torch outputs with ``scores_from_outputs`` (float32, on the outputs' device);
ONNX outputs are scored with ``dlopt.train.class_probabilities`` (numpy, torch-free for the
benchmark worker). Two implementations of one rule: this test holds them to it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlopt.train import class_probabilities
from dlopt.train.metrics import scores_from_outputs


@pytest.mark.parametrize("shape", [(500, 10), (500, 1), (500,)], ids=["softmax", "one logit", "squeezed logit"])
def test_torch_and_numpy_scoring_agree(shape):
    logits = torch.from_numpy(np.random.default_rng(0).normal(0.0, 4.0, shape).astype(np.float32))
    logits[:3] = torch.tensor([0.0, 30.0, -30.0]).reshape(3, *[1] * (len(shape) - 1))  # ties, saturated rows
    torch_p = scores_from_outputs(logits, "classification")
    numpy_p = class_probabilities(logits.numpy())
    assert torch_p.dtype == torch.float32 and torch_p.device == logits.device
    assert torch_p.shape == numpy_p.shape == (shape[0], shape[1] if len(shape) > 1 and shape[1] > 1 else 2)
    assert (torch_p.numpy().argmax(1) == numpy_p.argmax(1)).all()
    np.testing.assert_allclose(torch_p.numpy(), numpy_p, rtol=0, atol=1e-6)
