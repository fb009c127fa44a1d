"""Bench's ONNX parameter count is the network's weights, as the run's ``params``: a clip
bound kept as a buffer (QAT's PACT) is not a weight."""

from __future__ import annotations

import torch
from torch import nn

from dlopt.deploy import export_onnx
from dlopt.deploy._bench_worker import onnx_params


class _Clipped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.register_buffer("clip", torch.tensor(2.5))  # as PACT keeps its learned bound

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.relu(self.fc(x)), self.clip)


def test_a_clip_bound_is_not_counted_as_a_weight(tmp_path):
    model = _Clipped().eval()
    path = tmp_path / "clipped.onnx"
    export_onnx(model, torch.randn(1, 6), path, check_inputs=torch.randn(16, 6))
    assert onnx_params(path) == sum(p.numel() for p in model.parameters()) == 21
