"""The training objective's static metrics: input shape from the dataset registry, and the
architecture figures known before training."""

from __future__ import annotations

import pytest

from dlopt.config import RunConfig, parse_config
from dlopt.tune import static_metrics
from dlopt.tune._objective import input_shape


def _cfg(data):
    return parse_config({"data": data, "model": {"name": "mlp", "width": 16, "depth": 1}},
                        RunConfig)


@pytest.mark.parametrize("data, shape", [
    ({"name": "mnist"}, (1, 28, 28)),
    ({"name": "iris"}, (4,)),
    ({"name": "iris", "preprocess": [{"op": "zscore"}]}, (4,)),  # a scaler keeps the shape
    ({"name": "iris", "preprocess": [{"op": "pca", "n_components": 2}]}, None),
])
def test_input_shape_from_registry(data, shape):
    assert input_shape(_cfg(data)) == shape


def test_static_metrics_before_training():
    from dlopt.models import create_model

    model = create_model("mlp", input_shape=(4,), num_classes=3, width=16, depth=1)
    n = sum(p.numel() for p in model.parameters())
    out = static_metrics(model, (4,))
    assert out["params"] == n and out["macs"] > 0 and out["size_bytes"] > 0
    assert "latency_ms" not in out  # measured only when an objective or constraint reads it
    assert static_metrics(model, None) == {"params": float(n)}
