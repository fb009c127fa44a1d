"""The Python API: fit on names, tensors, Datasets and DataLoaders; the run directory
contract; load/predict/evaluate with the saved preprocessing; transfer learning; k-fold
cross-validation; early stopping; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlopt.errors import ConfigError, DataError, ModelError
from dlopt.train import fit, load, train_run
from dlopt.train.callbacks import should_stop

from train_helpers import assert_same_weights, tiny_config, weights

SUMMARY_KEYS = {"schema_version", "task", "dataset", "model", "params", "macs", "epochs",
                "train_seconds", "best_epoch", "val", "test"}


def _blobs(n: int = 240, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 8, generator=g) + 2.0 * nn.functional.one_hot(y, 8).float()
    return x, y


def _mlp(out: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, out))


QUICK = dict(epochs=2, batch_size=32, progress=False, threads=1)


def test_fit_on_tensors_writes_the_run_directory(tmp_path) -> None:
    res = fit(_mlp(), _blobs(), run_dir=tmp_path / "r", lr=0.01, **QUICK)
    d = res.run_dir
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "model.safetensors", "checkpoints"):
        assert (d / name).exists(), name
    s = json.loads((d / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(s) and s == res.summary
    assert {"accuracy", "f1_macro", "auc"} <= set(s["val"]) and {"accuracy", "f1_macro", "auc"} <= set(s["test"])
    assert s["test"]["accuracy"] > 0.8 and s["custom_model"] is True
    assert not res.model.training and len(res.history) == 2


@pytest.mark.parametrize("kind", ["dataset", "dataloader", "arrays"])
def test_fit_accepts_datasets_loaders_and_arrays(kind, tmp_path) -> None:
    x, y = _blobs()
    data = {"dataset": TensorDataset(x, y), "dataloader": DataLoader(TensorDataset(x, y), batch_size=50),
            "arrays": (x.numpy(), y.numpy())}[kind]
    res = fit(_mlp(), data, run_dir=tmp_path / kind, lr=0.01, **QUICK)
    assert res.summary["n_train"] + res.summary["n_val"] == 240


def test_fit_by_names_and_load_predict_with_saved_preprocessing(tmp_path) -> None:
    from dlopt.data._load import read_raw

    res = fit("lenet5", "mnist", run_dir=tmp_path / "r", subset=300, test_subset=100, **QUICK)
    loaded = load(res.run_dir)
    raw = read_raw("mnist").x_test[:5]  # uint8 pixels, as the dataset stores them
    pred, proba = loaded.predict(raw)
    x = torch.from_numpy(raw.astype(np.float32) / 255.0)
    with torch.no_grad():
        expected = res.model(x).argmax(1).numpy()
    assert (pred == expected).all() and proba.shape == (5, 10)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    single, _ = loaded.predict(raw[0, 0])  # one (28, 28) image
    assert single.tolist() == [pred[0]]
    assert loaded.evaluate()["accuracy"] == pytest.approx(res.summary["test"]["accuracy"])


def test_regression_run_reports_mse_mae_r2(tmp_path) -> None:
    res = fit({"name": "mlp", "width": 32}, "diabetes", run_dir=tmp_path / "r",
              preprocess=[{"op": "zscore"}], lr=3e-3, epochs=3, batch_size=32, progress=False)
    assert res.summary["task"] == "regression"
    assert {"mse", "mae", "r2"} <= set(res.summary["test"]) <= {"mse", "mae", "r2", "loss"}
    pred, proba = load(res.run_dir).predict(np.zeros((2, 10)))
    assert proba is None and pred.shape == (2,)


def test_custom_model_needs_to_be_passed_to_load(tmp_path) -> None:
    res = fit(_mlp(), _blobs(), run_dir=tmp_path / "r", **QUICK)
    with pytest.raises(ModelError, match="custom nn.Module"):
        load(res.run_dir)
    again = load(res.run_dir, model=_mlp())
    x = _blobs()[0][:4]
    with torch.no_grad():
        assert torch.equal(again.model(x), res.model(x))


def test_labels_out_of_range_is_one_clear_line(tmp_path) -> None:
    x, y = _blobs()
    with pytest.raises(DataError, match=r"labels out of range: found 3, the model has 3 outputs") as err:
        fit(_mlp(3), {"train": (x, y), "val": (x[:10], y[:10] + 1)}, run_dir=tmp_path / "r", **QUICK)
    assert "\n" not in str(err.value)


def test_unknown_recipe_keyword(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown fit\\(\\) keyword 'epoch'"):
        fit(_mlp(), _blobs(), run_dir=tmp_path / "r", epoch=3)


def test_transfer_new_head_freeze_and_unfreeze(tmp_path) -> None:
    pre = train_run(tiny_config(), run_dir=tmp_path / "pre")
    seen: dict[int, dict[str, torch.Tensor]] = {}

    class Snap:
        def on_epoch_end(self, state) -> None:
            seen[state.epoch] = {k: v.clone() for k, v in state.module.state_dict().items()}

    cfg = tiny_config(epochs=2, transfer={"init_from": str(pre.run_dir), "freeze": ["features.*"],
                                          "unfreeze_at_epoch": 1})
    x, y = _blobs(200, 5)
    images = torch.rand(200, 1, 28, 28) + 0.2 * y.float()[:, None, None, None]
    res = fit(config=cfg, data=(images, y), run_dir=tmp_path / "ft", callbacks=[Snap()])
    pre_w = weights(pre.run_dir)
    first = seen[1]
    conv = "features.0.0.weight"
    assert torch.equal(first[conv], pre_w[conv])  # frozen in epoch 1
    assert not torch.equal(seen[2][conv], pre_w[conv])  # unfrozen from epoch 2
    head = [k for k in first if k.endswith("weight")][-1]
    assert first[head].shape[0] == 5 and pre_w[head].shape[0] == 10  # new head for 5 classes
    assert res.summary["data_info"]["num_classes"] == 5


def test_init_from_an_ema_run_or_its_checkpoint_reads_the_same_ema_weights(tmp_path) -> None:
    from dlopt.train.transfer import read_init_weights

    pre = train_run(tiny_config(epochs=1, regularization={"ema_decay": 0.9}), run_dir=tmp_path / "pre")
    from_run = read_init_weights(pre.run_dir)
    assert_same_weights(from_run, weights(pre.run_dir))
    for link in ("last", "best"):
        assert_same_weights(read_init_weights(pre.run_dir / "checkpoints" / link), from_run)


def test_transfer_without_new_head_refuses_a_shape_change(tmp_path) -> None:
    pre = train_run(tiny_config(epochs=1), run_dir=tmp_path / "pre")
    cfg = tiny_config(epochs=1, transfer={"init_from": str(pre.run_dir), "new_head": False})
    x = torch.rand(60, 1, 28, 28)
    with pytest.raises(ConfigError, match="new_head=true"):
        fit(config=cfg, data=(x, torch.arange(60) % 4), run_dir=tmp_path / "ft")


def test_cross_validation_reports_mean_and_std(tmp_path) -> None:
    res = fit(_mlp(), _blobs(), run_dir=tmp_path / "cv", cv=3, lr=0.01, **QUICK)
    s = res.summary
    assert s["cv"] == 3 and s["folds"] == ["fold-1", "fold-2", "fold-3"]
    acc = s["cv_val"]["accuracy"]
    assert len(acc["values"]) == 3 and acc["mean"] == pytest.approx(np.mean(acc["values"]))
    assert acc["std"] == pytest.approx(np.std(acc["values"]))
    folds = [json.loads((tmp_path / "cv" / f"fold-{k}" / "summary.json").read_text()) for k in (1, 2, 3)]
    # the run's own figures, not the last fold's copied as if they were the run's; a key of a
    # single run's summary keeps its type there (a fold's rows, one reason), each fold's in cv_<key>
    for key in ("n_train", "n_val", "stop_reason"):
        assert s[f"cv_{key}"] == [f[key] for f in folds]
    assert (s["n_train"], s["n_val"]) == (folds[0]["n_train"], folds[0]["n_val"])
    assert s["n_train"] + s["n_val"] == 240 and max(s["cv_n_val"]) - min(s["cv_n_val"]) <= 1
    assert s["stop_reason"] == "epochs" == folds[0]["stop_reason"]
    assert s["steps"] == sum(f["steps"] for f in folds) and s["data_info"]["n_train"] == 240
    assert s["data_fingerprint"]["rows"] == 240 != folds[-1]["data_fingerprint"]["rows"]


@pytest.mark.parametrize("reasons, one", [
    (["epochs", "epochs"], "epochs"),
    (["early stopping: val_loss did not improve for 2 epochs (best 0.5)",
      "early stopping: val_loss did not improve for 2 epochs (best 0.4)"], "early stopping"),
    (["epochs", "early stopping: val_loss did not improve for 2 epochs (best 0.4)"], "mixed"),
])
def test_a_cross_validation_summary_has_one_stop_reason(reasons, one) -> None:
    from dlopt.train.cv import _one_reason

    assert _one_reason(reasons) == one


def test_early_stopping_stops_and_says_why(tmp_path) -> None:
    res = fit(_mlp(), _blobs(), run_dir=tmp_path / "r", epochs=20, batch_size=32, progress=False, lr=1e-9,
              early_stopping={"enabled": True, "monitor": "val_loss", "patience": 2, "min_delta": 0.5})
    assert res.summary["epochs"] == 3
    assert res.summary["stop_reason"].startswith("early stopping: val_loss did not improve")


def test_early_stopping_never_stops_on_a_metric_that_was_never_finite(tmp_path, caplog) -> None:
    # a one-class validation split has no AUC: the run was stopped at epoch `patience` as if
    # the metric had stopped improving (and was then refused a raised budget on resume)
    x, y = _blobs()
    val = (x[y == 0][:30], torch.zeros(30, dtype=torch.long))
    res = fit(_mlp(), {"train": (x, y), "val": val, "test": (x, y)}, run_dir=tmp_path / "r", epochs=3,
              batch_size=32, progress=False, threads=1,
              early_stopping={"enabled": True, "monitor": "val_auc", "mode": "max", "patience": 2})
    assert all(np.isnan(h["val_auc"]) for h in res.history)
    assert res.summary["epochs"] == 3 and res.summary["stop_reason"] == "epochs"
    assert "val_auc is nan at epoch 1" in caplog.text and "never stops the run" in caplog.text


@pytest.mark.parametrize("values, mode, stop", [
    ([1.0, 0.9, 0.8], "min", False),
    ([1.0, 1.1, 1.2], "min", True),
    ([1.0, 1.0, 1.0], "min", True),         # equal is not an improvement
    ([0.5, 0.6, 0.55], "max", False),
    ([0.5, float("nan"), float("nan")], "max", True),
    ([float("nan")] * 3, "max", False),     # no finite value: no best to miss
    ([], "min", False),
])
def test_should_stop_is_a_pure_decision(values, mode, stop) -> None:
    got, reason = should_stop(values, mode=mode, patience=2, monitor="m")
    assert got is stop and (reason.startswith("m did not improve") if stop else reason == "")


def test_min_delta_counts_small_gains_as_no_improvement() -> None:
    assert should_stop([1.0, 0.99, 0.98], mode="min", patience=2, min_delta=0.05)[0]
    assert not should_stop([1.0, 0.99, 0.90], mode="min", patience=2, min_delta=0.05)[0]


def test_threads_and_determinism_are_restored_after_fit(tmp_path) -> None:
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    fit(_mlp(), _blobs(), run_dir=tmp_path / "r", deterministic=True, **QUICK)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


def test_transfer_refuses_a_body_of_another_shape_instead_of_training_it_fresh(tmp_path) -> None:
    # width 0.5 -> 1.0: only one bias matched, so the "fine-tuned" run trained from scratch
    pre = train_run(tiny_config(epochs=1), run_dir=tmp_path / "pre")
    cfg = tiny_config(epochs=1, model={"name": "lenet5", "width": 1.0}, transfer={"init_from": str(pre.run_dir)})
    with pytest.raises(ConfigError, match=r"features.0.0.weight has shape \(3, 1, \d, \d\) there but \(6, 1, \d, \d\) "
                                          r"here; only the head \(classifier.5\) may differ") as err:
        train_run(cfg, run_dir=tmp_path / "ft")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "ft").exists()  # refused before training: nothing left behind


class _EvalBatchSizes(nn.Module):
    """An MLP that records the batch sizes it sees in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.net, self.sizes = _mlp(), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            self.sizes.append(x.shape[0])
        return self.net(x)


def test_every_evaluation_keeps_to_eval_batch_size(tmp_path) -> None:
    # the final test pass used 4096 and load().evaluate() 1024, whatever the run set
    model = _EvalBatchSizes()
    res = fit(model, _blobs(), run_dir=tmp_path / "r", eval_batch_size=7, **QUICK)
    assert res.summary["n_test"] > 7 and max(model.sizes) == 7
    model.sizes.clear()
    load(res.run_dir, model=model).evaluate(_blobs(40))
    assert max(model.sizes) == 7
