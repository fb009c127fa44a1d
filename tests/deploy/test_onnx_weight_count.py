"""Bench's ONNX ``params`` counts the network's weights, as the run's ``params`` counts the
PyTorch model: the exporter's one-element constants are not weights, one-element weights are."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlopt.deploy import export_onnx
from dlopt.deploy._bench_worker import onnx_params
from dlopt.models import create_model


def _exported(model: nn.Module, example: torch.Tensor, path) -> nn.Module:
    """``model`` with distinct random weights (equal tensors, e.g. fresh norm scales, would be
    stored once) exported to ``path`` with the default exporter."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    export_onnx(model.eval(), example[:2], path, check_inputs=example)
    return model


@pytest.mark.parametrize("name,options", [("gru", {"width": 8}), ("lstm", {"width": 8}),
                                          ("vit", {"width": 16, "depth": 1, "heads": 2})])
def test_exporter_constants_are_not_counted(tmp_path, name, options):
    """GRU/LSTM: the 0-d 0.0 their zero state is expanded from; ViT: the attention scale."""
    model = create_model(name, input_shape=(1, 12, 12), num_classes=3, **options)
    model = _exported(model, torch.rand(8, 1, 12, 12), tmp_path / f"{name}.onnx")
    assert onnx_params(tmp_path / f"{name}.onnx") == sum(p.numel() for p in model.parameters())


class _OneElementWeights(nn.Module):
    """A Linear(.., 1) on (N, L, F) (MatMul + Add of a [1] bias), PReLU's single slope, and a
    Linear(.., 1) head (Gemm with a [1] bias)."""

    def __init__(self) -> None:
        super().__init__()
        self.step, self.act, self.head = nn.Linear(6, 1), nn.PReLU(), nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.step(x)).flatten(1))


def test_one_element_weights_are_counted_in_float_and_int8_files(tmp_path):
    from dlopt.deploy import quantize_static_onnx

    x = torch.randn(32, 5, 6)
    model = _exported(_OneElementWeights(), x, tmp_path / "m.onnx")
    want = sum(p.numel() for p in model.parameters())
    assert onnx_params(tmp_path / "m.onnx") == want == 6 + 1 + 1 + 5 + 1
    int8 = quantize_static_onnx(tmp_path / "m.onnx", tmp_path / "m.int8.onnx", x.numpy())
    assert onnx_params(int8) == want
