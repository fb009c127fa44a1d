"""The training objective's static metrics: input shape from the dataset registry, and the
architecture figures known before training (a weights file's size as the run writes it)."""

from __future__ import annotations

import pytest

from dlopt.config import RunConfig, TuneConfig, parse_config
from dlopt.tune import static_metrics, train_objective, tune
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
    assert out["params"] == n and out["macs"] > 0 and out["size_bytes"] > 4 * n
    assert "latency_ms" not in out  # measured only when an objective or constraint reads it
    # the weights file's size needs no input shape (user data): known before training too
    assert static_metrics(model, None) == {"params": float(n), "size_bytes": out["size_bytes"]}


def test_static_metrics_size_reads_no_weight_data():
    # size_bytes serialized every trial's weights (100M params: seconds and a copy of the model;
    # from a GPU, a copy to the host): a model on the meta device has no data to copy at all
    from torch import nn

    from dlopt.train.checkpoint import weights_bytes

    def net(device):
        return nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Linear(32, 3)).to(device)

    on_meta = static_metrics(net("meta"), None)
    assert on_meta == {"params": 64 * 32 + 32 + 2 * 32 + 32 * 3 + 3,
                       "size_bytes": len(weights_bytes(net("cpu")))}


def _size_study(tmp_path, name, constraints, seen):
    def objective(cfg, ctx):  # dlopt's training objective; records what the trial measured
        metrics = train_objective(cfg, ctx)
        seen.append((ctx.static["size_bytes"], metrics["size_bytes"],
                     (ctx.run_dir / "model.safetensors").stat().st_size))
        return metrics

    cfg = parse_config({
        "name": name, "data": {"name": "mnist", "subset": 200, "test_subset": 100},
        "model": {"name": "mlp", "width": 16, "depth": 1},
        "train": {"epochs": 1, "batch_size": 100, "progress": False, "threads": 1},
        "search": {"space": {"train.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
                   "sampler": {"name": "random", "seed": 0}, "pruner": "none",
                   "constraints": constraints},
    }, TuneConfig)
    return tune(cfg, study_dir=tmp_path / name, storage="memory", trials=1, objective=objective,
                plots=False)


def test_a_size_constraint_is_checked_before_training_on_the_weights_files_bytes(tmp_path):
    # the check before training counted params x 4 while the finished trial's size_bytes is its
    # safetensors file (header included): a bound between the two passed the check, trained,
    # and ended infeasible
    seen: list = []
    _size_study(tmp_path, "free", [], seen)
    (before, after, file), = seen
    assert before == after == file
    res = _size_study(tmp_path, "edge", [{"metric": "size_bytes", "max": file - 1}], seen)
    (rec,) = res.ran
    assert rec.state == "PRUNED" and rec.epochs == 0
    assert rec.note == f"size_bytes={file} breaks the constraint <= {file - 1} before training"
