"""Bench's ONNX ``params`` counts a model's learned scalar parameters (a ReZero alpha) with
either exporter, as the run's ``params`` counts them in the PyTorch model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlopt.deploy import export_onnx
from dlopt.deploy._bench_worker import onnx_params


class _Scaled(nn.Module):
    """Linear(4, 3) times a learned 0-d scale plus a learned 0-d shift."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.alpha, self.shift = nn.Parameter(torch.tensor(2.0)), nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * self.alpha + self.shift


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_learned_scalars_are_counted(tmp_path, exporter):
    torch.manual_seed(0)
    model, x = _Scaled().eval(), torch.rand(8, 4)
    export_onnx(model, x[:2], tmp_path / "m.onnx", check_inputs=x, exporter=exporter)
    assert onnx_params(tmp_path / "m.onnx") == sum(p.numel() for p in model.parameters()) == 17
