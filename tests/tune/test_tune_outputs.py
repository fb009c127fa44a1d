"""Tune outputs found by exploratory testing: trials pruned at their last epoch, the hint of
a stopped trial, a study without a best trial, metrics.jsonl of trials that never trained,
Ctrl-C's hint."""

from __future__ import annotations

import logging

import pytest
from test_cli_tune import _csv_rows, _write_config, runner
from test_retry_resume import _config, _sigterm_at_epoch
from tune_helpers import digits_objective, tune_config

from dlopt.cli import app
from dlopt.tune import tune


def test_a_trial_that_trained_every_epoch_is_never_pruned(tmp_path):
    # the median pruner is asked only from step 2 on (optuna: step >= warm-up), and epoch 2 is
    # the last: nothing is left to save by stopping, so every trial completes (before: the
    # worse half PRUNED at epoch 2 of 2)
    cfg = tune_config(trials=6, sampler={"name": "random", "seed": 0}, pruner={
        "name": "median", "options": {"n_startup_trials": 1, "n_warmup_steps": 2}})
    cfg.train.epochs = 2
    res = tune(cfg, study_dir=tmp_path, storage="memory", objective=digits_objective, plots=False)
    assert [r.state for r in res.ran] == ["COMPLETE"] * 6
    assert all(r.epochs == 2 for r in res.ran)


def test_the_pareto_rule_does_not_stop_a_trial_at_its_last_epoch(tmp_path):
    space = {"train.optim.lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
             "model.width": {"type": "float", "low": 0.25, "high": 1.0}}
    cfg = tune_config(space, trials=8, sampler={"name": "random", "seed": 1},
                      objectives=[{"metric": "val_accuracy"}, {"metric": "params"}],
                      pruner={"name": "pareto",
                              "options": {"n_startup_trials": 1, "n_warmup_steps": 1}})
    cfg.train.epochs = 2
    res = tune(cfg, study_dir=tmp_path, storage="memory", objective=digits_objective, plots=False)
    assert [r.state for r in res.ran] == ["COMPLETE"] * 8


def test_a_trial_stopped_by_sigterm_notes_tunes_way_on(tmp_path):
    from dlopt.train import Terminated
    from dlopt.tune import RESUME_HINT

    cfg, sdir = _config(tmp_path, epochs=3), tmp_path / "s"
    with pytest.raises(Terminated):
        tune(cfg, study_dir=sdir, trials=1, objective=_sigterm_at_epoch(1), plots=False)
    [failed, _retry] = _csv_rows(sdir)
    # before: "continue with --resume", an option dlopt tune does not have
    assert failed["state"] == "FAIL" and failed["note"].endswith(RESUME_HINT), failed["note"]
    assert "--resume" not in failed["note"]


def test_a_study_without_a_complete_trial_says_why_there_is_no_best(tmp_path, caplog):
    config = _write_config(tmp_path / "t.yaml", constraints=[{"metric": "params", "max": 10}],
                           objectives=[{"metric": "val_accuracy"}, {"metric": "params"}])
    sdir = tmp_path / "s"
    with caplog.at_level(logging.INFO):
        res = runner.invoke(app, ["tune", str(config), "--study-dir", str(sdir), "--trials", "2"])
    assert res.exit_code == 0, res.output
    assert ("no best trial: none of the study's trials is COMPLETE (2 pruned, 0 failed; "
            "trials.csv notes say why): no best_params.json, no best_config.yaml") in res.output
    # before: four optuna.visualization warnings and empty plots, nothing saying why
    assert not [r for r in caplog.records if r.name.startswith("optuna.visualization")
                and r.levelno >= logging.WARNING]
    assert not list((sdir / "plots").glob("*.png"))
    assert not (sdir / "best_params.json").exists()


def test_max_steps_ending_training_early_is_its_last_step_too(tmp_path):
    # max_steps ends every trial inside epoch 1 of 3: that epoch is its last, not asked either
    cfg = _config(tmp_path, epochs=3, trials=4, pruner={
        "name": "median", "options": {"n_startup_trials": 1, "n_warmup_steps": 0}})
    cfg.train.max_steps = 2
    res = tune(cfg, study_dir=tmp_path / "s", plots=False)
    assert [(r.state, r.epochs) for r in res.ran] == [("COMPLETE", 1)] * 4
