"""``weights_size``: the length of the safetensors file ``weights_bytes`` writes, computed from
names, dtypes and shapes alone (a tune size constraint reads it before every trial)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlopt.models import create_model
from dlopt.train.checkpoint import _SAFETENSORS_DTYPES, weights_bytes, weights_size


class _Tied(nn.Module):
    """An embedding and an output layer sharing one weight (stored once per name)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.out = nn.Linear(6, 11, bias=False)
        self.out.weight = self.embed.weight


def _models() -> dict[str, nn.Module | dict[str, torch.Tensor]]:
    return {
        "mlp": create_model("mlp", input_shape=(1, 28, 28), num_classes=10, width=32, depth=2),
        "lenet5": create_model("lenet5", input_shape=(1, 28, 28), num_classes=10),
        "buffers": nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.BatchNorm1d(7, affine=False)),
        "tied": _Tied(),
        "bf16": nn.Sequential(nn.Linear(3, 1000), nn.LayerNorm(1000)).to(torch.bfloat16),
        "empty": nn.ReLU(),
        # every dtype it knows, a scalar, an empty tensor, names JSON escapes or sorts byte-wise
        "dtypes": {f'w"\\é{i}': torch.zeros(i % 3, 2, dtype=dt) for i, dt in enumerate(_SAFETENSORS_DTYPES)}
        | {"scalar": torch.tensor(3.0), "Z": torch.zeros(0), "a\n": torch.ones(9, dtype=torch.int64)},
    }


def _unlisted() -> dict[str, torch.Tensor]:
    """A packed dtype whose header shape is not the tensor's: left to the library itself."""
    packed = getattr(torch, "float4_e2m1fn_x2", None)
    if packed is None:
        pytest.skip("this torch has no float4_e2m1fn_x2")
    return {"w": torch.zeros(3, 5, dtype=torch.uint8).view(packed), "b": torch.zeros(2)}


@pytest.mark.parametrize("name", list(_models()))
def test_weights_size_is_the_length_of_the_weights_file(name):
    model = _models()[name]
    assert weights_size(model) == len(weights_bytes(model))


def test_a_dtype_outside_the_table_is_measured_by_the_library():
    sd = _unlisted()
    assert weights_size(sd) == len(weights_bytes(sd))
