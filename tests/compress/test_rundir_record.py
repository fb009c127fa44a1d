"""What a compressed run directory records: the precision of the model it delivers (not the
source's, copied), and no trace of a step refused before it wrote anything."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from dlopt.compress import Budget, distill_run, prune_run, quantize_run
from dlopt.errors import ModelError

_ANY_DROP = Budget(max_drop_pt=100.0)  # the guard accepts: the delivered model is the candidate's


@pytest.mark.parametrize("method, precision", [("auto", "int8 (dynamic)"), ("binary", "binary")])
def test_a_quantized_runs_summary_says_what_its_model_holds(mlp_run, tmp_path, fast, method, precision):
    res = quantize_run(mlp_run, tmp_path / "q", method=method, epochs=1, budget=_ANY_DROP, measure=fast)
    assert res.accepted, res.reason
    assert res.summary["precision"] == precision


def test_a_quantized_onnx_files_summary_says_int8(mlp_run, tmp_path, fast):
    from dlopt.deploy import export_run

    onnx = export_run(mlp_run, tmp_path / "m.onnx", exporter="legacy").path
    res = quantize_run(onnx, tmp_path / "q", method="dynamic", budget=_ANY_DROP, measure=fast)
    assert res.accepted, res.reason
    assert res.summary["precision"] == "int8 (dynamic)"


class _Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


@pytest.fixture(scope="module")
def custom_run(tmp_path_factory):
    """A finished run of a user nn.Module: prune, distill and quantize refuse it."""
    import dlopt

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    run = tmp_path_factory.mktemp("runs") / "custom"
    dlopt.fit(_Custom(), {"train": (x, y), "val": (x[:16], y[:16]), "test": (x[:16], y[:16])}, run_dir=run,
              config={"train": {"epochs": 1, "progress": False}})
    return run


@pytest.mark.parametrize("step", [
    lambda run, out: prune_run(run, out, method="l1", target="macs=0.5"),
    lambda run, out: quantize_run(run, out, method="dynamic"),
    lambda run, out: distill_run(run, "mlp", out),
], ids=["prune", "quantize", "distill"])
def test_a_refused_step_removes_the_out_directory_it_created(custom_run, tmp_path, step):
    with pytest.raises(ModelError):
        step(custom_run, tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()  # the parent it made too
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(ModelError):
        step(custom_run, existing)
    assert existing.is_dir() and not any(existing.iterdir())  # an OUT that was there stays, empty
