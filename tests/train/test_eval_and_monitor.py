"""``dlopt eval`` scores a run as it was scored at the end of training (its saved
preprocessing, its own data), and monitors no epoch will report are refused before training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.errors import ConfigError, DataError
from dlopt.train import fit, load

from train_helpers import DATA, MODEL, one_error_line

runner = CliRunner()

IRIS = {"name": "iris", "preprocess": [{"op": "zscore"}]}
QUICK = {"epochs": 1, "batch_size": 32, "progress": False, "threads": 1}


def _eval_cli(run: Path, *extra: str) -> dict[str, float]:
    res = runner.invoke(app, ["eval", str(run), "--threads", "1", *extra])
    assert res.exit_code == 0, res.output
    return {k: float(v) for k, v in (ln.split(" ", 1) for ln in res.output.strip().splitlines())}


def _summary_test(run: Path) -> dict[str, float]:
    return json.loads((run / "summary.json").read_text())["test"]


def test_eval_equals_the_summary_of_a_cv_fold_and_of_a_normal_run(tmp_path) -> None:
    # each fold fits zscore on its own rows: refitting on the whole pool scored other inputs
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"name": "cv", "data": IRIS, "model": {"name": "mlp", "width": 16},
                                   "train": {**QUICK, "epochs": 2}}))
    res = runner.invoke(app, ["train", str(cfg), "--run-dir", str(tmp_path / "cv"), "--cv", "3"])
    assert res.exit_code == 0, res.output
    normal = fit({"name": "mlp", "width": 16}, "iris", run_dir=tmp_path / "r", preprocess=IRIS["preprocess"],
                 **QUICK).run_dir
    for run in (tmp_path / "cv" / "fold-1", tmp_path / "cv" / "fold-2", normal):
        got, want = _eval_cli(run), _summary_test(run)
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-4), run.name
        assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-4), run.name
    assert load(normal).evaluate()["loss"] == pytest.approx(_summary_test(normal)["loss"], abs=1e-5)


def test_eval_runs_under_the_autocast_the_training_test_pass_ran_under(tmp_path) -> None:
    # eval ran in fp32: a bf16 run's loss differed from its summary by ~5e-6, its AUC by ~6e-4
    run = fit(MODEL, DATA, run_dir=tmp_path / "r", precision="bf16", **{**QUICK, "batch_size": 48}).run_dir
    got, want = load(run).evaluate(), _summary_test(run)
    assert got == {k: pytest.approx(want[k], rel=0, abs=1e-9) for k in got}


def test_eval_on_another_dataset_applies_the_runs_saved_preprocessing(tmp_path) -> None:
    # --data NAME refitted zscore on that set's own training rows: inputs the model never takes
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    y = (x[:, 0] > 0).astype(int)
    for name, shift in (("a", 0.0), ("b", 3.0)):
        rows = "".join(f"{u:.4f},{v:.4f},{w:.4f},{t}\n" for (u, v, w), t in zip(x * (1 + shift) + shift, y))
        (tmp_path / f"{name}.csv").write_text("u,v,w,y\n" + rows)
    data = {"name": f"csv:{tmp_path / 'a.csv'}", "target": "y", "preprocess": [{"op": "zscore"}]}
    run = fit({"name": "mlp", "width": 8}, data, run_dir=tmp_path / "r", **QUICK).run_dir
    from dlopt.data import splits_of

    m = load(run)
    other = f"csv:{tmp_path / 'b.csv'}"
    raw_x, raw_y = splits_of(m.config.data.model_copy(update={"name": other})).test
    assert m.evaluate(other) == m.evaluate((raw_x, raw_y))  # the saved zscore, as predict applies it


def test_eval_of_a_run_trained_on_in_memory_data_needs_data(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 60)
    res = fit({"name": "mlp", "width": 8}, (x, y), run_dir=tmp_path / "r", **QUICK)
    with pytest.raises(DataError, match="in-memory data") as err:
        load(res.run_dir).evaluate()
    assert "\n" not in str(err.value)
    line = one_error_line(runner.invoke(app, ["eval", str(res.run_dir)]), 2)
    assert "in-memory data" in line and "--data" in line
    assert set(load(res.run_dir).evaluate((x, y))) >= {"loss", "accuracy"}
    assert "accuracy" in _eval_cli(res.run_dir, "--data", "digits")  # digits: (1, 8, 8) inputs, 10 classes


@pytest.mark.parametrize(("data", "metric"), [("iris", "top5"), ("iris", "precision_macro"), ("iris", "mse"),
                                              ("diabetes", "accuracy")])
def test_a_metric_validation_never_computes_is_refused_before_training(tmp_path, data, metric) -> None:
    run = tmp_path / "r"
    with pytest.raises(ConfigError, match=rf"train.metric='{metric}' is not computed.*use one of: loss, ") as err:
        fit({"name": "mlp", "width": 8}, data, run_dir=run, metric=metric, **QUICK)
    assert "\n" not in str(err.value)
    assert not run.exists()  # refused before the first step: the fresh run dir is taken back


@pytest.mark.parametrize(("override", "needle"), [
    ({"val_fraction": 0.0}, "needs a validation split"),
    ({"monitor": "val_top5"}, "use one of: val_loss, val_accuracy"),
])
def test_an_early_stopping_monitor_that_never_exists_is_refused_at_start(tmp_path, override, needle) -> None:
    cfg = {"name": "es", "data": {"name": "iris", "val_fraction": override.get("val_fraction", 0.1)},
           "model": {"name": "mlp", "width": 8},
           "train": {**QUICK, "epochs": 3, "early_stopping": {
               "enabled": True, "monitor": override.get("monitor", "val_loss")}}}
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "r"
    line = one_error_line(runner.invoke(app, ["train", str(f), "--run-dir", str(run)]), 2)
    assert "train.early_stopping.monitor=" in line and needle in line
    assert not run.exists() or not any(run.iterdir())  # nothing trained, nothing left behind


def test_eval_and_validation_score_the_class_weighted_loss_that_was_trained(tmp_path) -> None:
    # breast-cancer is imbalanced (~37 % / 63 %): a balanced loss is far from the plain one
    data = {"name": "breast-cancer", "preprocess": [{"op": "zscore"}]}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"name": "cw", "data": data, "model": {"name": "mlp", "width": 16},
                                   "train": {**QUICK, "epochs": 2, "loss": {"class_weights": "balanced"}}}))
    run = tmp_path / "r"
    assert runner.invoke(app, ["train", str(cfg), "--run-dir", str(run)]).exit_code == 0
    assert _eval_cli(run)["loss"] == pytest.approx(_summary_test(run)["loss"], abs=1e-5)
    from dlopt.config import load_config
    from dlopt.data import load_data

    bundle = load_data(load_config(cfg).data)
    last = load(run / "checkpoints" / "last")  # the weights the last epoch validated
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert last.evaluate(bundle.val)["loss"] == pytest.approx(history[-1]["val_loss"], abs=1e-5)
    counts = np.bincount(bundle.train.y.numpy())  # the weights come from the training labels
    assert last.class_weights == pytest.approx(len(bundle.train) / (2 * counts), rel=1e-6)
    last.class_weights = None  # the unweighted loss eval used to report is a different number
    assert abs(last.evaluate(bundle.val)["loss"] - history[-1]["val_loss"]) > 1e-3


def test_a_cv_summary_reports_each_folds_class_weights_not_the_last_folds(tmp_path) -> None:
    # each fold weighs its own training labels; the summary claimed the last fold's for the run
    data = {"name": "breast-cancer", "preprocess": [{"op": "zscore"}]}
    res = fit({"name": "mlp", "width": 8}, data, run_dir=tmp_path / "cv", cv=3, class_weights="balanced", **QUICK)
    s = res.summary
    assert "class_weights" not in s
    folds = {f: json.loads((tmp_path / "cv" / f / "summary.json").read_text())["class_weights"] for f in s["folds"]}
    assert s["cv_class_weights"] == folds and len(folds) == 3
    assert {"cv_val", "cv_test", "val", "test", "n_train"} <= set(s)  # the other keys are kept


def test_balanced_class_weights_on_regression_are_refused_not_dropped(tmp_path) -> None:
    run = tmp_path / "r"
    with pytest.raises(ConfigError, match="class_weights='balanced' weighs classes.*regression") as err:
        fit({"name": "mlp", "width": 8}, "diabetes", run_dir=run, class_weights="balanced", **QUICK)
    assert "\n" not in str(err.value)
    assert not run.exists()


@pytest.mark.parametrize(("monitor", "mode", "want"), [("val_accuracy", "min", "max"), ("val_loss", "max", "min")])
def test_an_early_stopping_mode_against_its_monitor_is_refused(tmp_path, monitor, mode, want) -> None:
    # mode min on accuracy counted every rising epoch as "no improvement" and stopped the run
    run = tmp_path / "r"
    with pytest.raises(ConfigError, match=rf"mode='{mode}' does not fit monitor '{monitor}'.*use mode: {want}") as err:
        fit({"name": "mlp", "width": 8}, "iris", run_dir=run, early_stopping={"enabled": True, "monitor": monitor,
                                                                               "mode": mode}, **QUICK)
    assert "\n" not in str(err.value)
    assert not run.exists()
    ok = fit({"name": "mlp", "width": 8}, "iris", run_dir=tmp_path / "ok",
             early_stopping={"enabled": True, "monitor": monitor, "mode": want}, **QUICK)
    assert ok.summary["epochs"] == 1
