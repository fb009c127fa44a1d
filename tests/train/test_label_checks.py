"""Targets, losses and model outputs checked against each other at fit start: a mismatch is
one clear line (exit 2) before any training, the single-output binary classifier trains with
``bce``, and the macro metrics average over the classes that occur."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import Dataset
from typer.testing import CliRunner

import dlopt
from dlopt.cli import app
from dlopt.errors import ConfigError, DataError
from dlopt.train.callbacks.progress import format_row
from dlopt.train.metrics import compute_metrics

from train_helpers import one_error_line

QUIET = {"epochs": 1, "progress": False, "threads": 1}


def _blobs(n: int = 120, classes: int = 3, features: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Separable Gaussian blobs: class ids 0..classes-1."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, features)) + 3 * rng.normal(size=(classes, features))[y]
    return x.astype(np.float32), y.astype(np.int64)


def _regression(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return x, (x @ np.array([1.0, -2.0, 0.5, 3.0, 0.0])).astype(np.float32)


# ------------------------------------------------------------------------- loss vs task
def test_classification_loss_on_regression_data_is_one_line_exit_2(tmp_path: Path) -> None:
    cfg = {"name": "reg", "data": {"name": "diabetes"}, "model": {"name": "mlp", "width": 8, "depth": 1},
           "train": {**QUIET, "loss": {"name": "cross_entropy"}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(tmp_path / "c.yaml"), "--run-dir", str(run)])
    line = one_error_line(res, 2)
    assert "'cross_entropy' is a classification loss" in line and "allowed for regression: huber, mae, mse" in line
    assert not run.exists()  # refused before training: nothing left behind


@pytest.mark.parametrize("loss", ["cross_entropy", "hinge", "mse"])
def test_a_single_output_classifier_needs_bce(tmp_path: Path, loss: str) -> None:
    x, y = _blobs(classes=2)
    with pytest.raises(ConfigError, match=rf"'{loss}' needs one output per class.*trains with: bce"):
        dlopt.fit(nn.Linear(8, 1), (x, y), loss=loss, run_dir=tmp_path / "run", **QUIET)
    assert not (tmp_path / "run").exists()


def test_mse_on_class_ids_regresses_one_hot_targets(tmp_path: Path) -> None:
    # a regression loss on classification is allowed with one output per class (one-hot targets)
    x, y = _blobs()
    res = dlopt.fit(nn.Linear(8, 3), (x, y), loss="mse", lr=0.05, run_dir=tmp_path / "run", **{**QUIET, "epochs": 3})
    assert res.summary["task"] == "classification" and res.summary["test"]["accuracy"] > 0.6


# --------------------------------------------------------------- single-output binary bce
def test_single_output_bce_trains_and_reads_its_logit_as_class_1(tmp_path: Path) -> None:
    x, y = _blobs(classes=2)
    res = dlopt.fit(nn.Linear(8, 1), (x, y), loss="bce", lr=0.05, run_dir=tmp_path / "run",
                    **{**QUIET, "epochs": 3})
    with torch.no_grad():
        logit = res.model(torch.from_numpy(x))[:, 0]
    assert res.summary["test"]["accuracy"] > 0.9
    pred, proba = dlopt.load(tmp_path / "run", model=nn.Linear(8, 1)).predict(x)
    np.testing.assert_array_equal(pred, (torch.sigmoid(logit) > 0.5).numpy())
    np.testing.assert_allclose(proba[:, 1], torch.sigmoid(logit).numpy(), rtol=1e-6)


def test_single_squeezed_logit_scores_as_binary() -> None:
    logits = torch.tensor([-2.0, -0.1, 0.3, 4.0])  # a model returning (N,), not (N, 1)
    m = compute_metrics(logits, torch.tensor([0, 1, 1, 1]), task="classification", names=["accuracy", "auc"])
    assert m == {"accuracy": 0.75, "auc": 1.0}


# ------------------------------------------------------------------- outputs vs classes
def test_more_outputs_than_classes_warns_at_fit_start(tmp_path: Path, caplog: Any) -> None:
    x, y = _blobs()
    with caplog.at_level(logging.WARNING, logger="dlopt.train.inputs"):
        dlopt.fit(nn.Linear(8, 5), (x, y), run_dir=tmp_path / "run", **QUIET)
    warned = [r.getMessage() for r in caplog.records if r.name == "dlopt.train.inputs"]
    assert warned == ["the model has 5 outputs, the train labels name 3 classes (0..2): predictions may name "
                      "classes 3..4, which have no training examples"]


# --------------------------------------------------------------- plausible input mistakes
class _TwoInputs(Dataset):
    def __init__(self) -> None:
        self.x, self.y = _blobs()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Any:
        return (torch.from_numpy(self.x[i]), torch.zeros(2)), int(self.y[i])


def _mistakes() -> dict[str, tuple[Any, int, str]]:
    """case -> (data, model outputs, the error's words)."""
    x, y = _blobs()
    xr, yr = _regression()
    return {
        "one-hot y": ((x, np.eye(3)[y]), 3, r"data y has shape \(120, 3\).*one-hot labels: pass y.argmax\(1\)"),
        "two regression columns": ((xr, np.stack([yr, yr], 1)), 1, r"data y has shape \(120, 2\); allowed: one target"),
        "text labels": ((x, np.array(["a", "b", "c"])[y]), 3, r"data y has dtype <U1; allowed: numbers.*class ids"),
        "float labels, 3 outputs": ((x, y.astype(np.float32)), 3,
                                    r"targets are floats, which means regression.*this one has 3.*integer class ids"),
        "integer regression targets": ((xr, np.round(yr).astype(np.int64)), 1,
                                       r"the model has 1 output \(allowed 0..1.*for regression pass floats"),
        "two inputs as a tuple": (((x, np.zeros((120, 2), np.float32)), y), 3,
                                  r"data x is a tuple of 2 arrays: fit feeds the model one input tensor"),
        "dataset of two inputs": (_TwoInputs(), 3, r"dataset x is a tuple/list per sample: fit feeds the model one"),
    }


@pytest.mark.parametrize("case", list(_mistakes()))
def test_plausible_input_mistakes_get_one_clear_error(tmp_path: Path, case: str) -> None:
    data, outputs, words = _mistakes()[case]
    width = 5 if "regression" in case else 8
    with pytest.raises(DataError, match=words):
        dlopt.fit(nn.Linear(width, outputs), data, run_dir=tmp_path / "run", **QUIET)


# --------------------------------------------------------------------------- metrics
def test_macro_metrics_average_the_classes_that_occur_as_sklearn() -> None:
    from sklearn import metrics as skm

    y = np.array([1, 2, 1, 2, 2, 1, 2])  # no class 0, three outputs
    logits = torch.tensor([[0, 3, 0], [0, 0, 3], [0, 2, 1], [0, 1, 2], [0, 2, 1.5], [0, 1, 0], [0, 0, 1]])
    m = compute_metrics(logits.float(), torch.from_numpy(y), task="classification",
                        names=["f1_macro", "precision_macro", "recall_macro", "auc"])
    pred = logits.argmax(1).numpy()
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["precision_macro"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert m["recall_macro"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    p = torch.softmax(logits.float(), 1).numpy()
    ovr = [skm.roc_auc_score(y == c, p[:, c]) for c in (1, 2)]  # one-vs-rest over the classes present
    assert m["auc"] == pytest.approx(np.mean(ovr))


def test_an_undefined_metric_reads_n_a_in_the_epoch_line_as_in_the_test_line() -> None:
    line = format_row({"epoch": 1, "val_loss": 0.5, "val_auc": math.nan, "seconds": 0.1}, epochs=2)
    assert "val_auc n/a" in line and "val_loss 0.5" in line
