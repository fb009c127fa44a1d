"""A trial that early stopping ends is complete at the epoch where it stops: the pruner is not
asked there (stopping it saves no training), as at a trial's last epoch."""

from __future__ import annotations

from test_retry_resume import _config

from dlopt.tune import tune


def test_a_trial_ended_by_early_stopping_completes_with_its_value(tmp_path):
    # min_delta 10 on val_loss: epoch 2 never improves, so early stopping ends every trial
    # there, 2 epochs short of train.epochs; the median pruner is asked from step 2 on
    # (before: the trials under the median PRUNED at epoch 2, the epoch their training ended)
    cfg = _config(tmp_path, epochs=4, trials=5, pruner={
        "name": "median", "options": {"n_startup_trials": 1, "n_warmup_steps": 2}})
    cfg.train.early_stopping = cfg.train.early_stopping.model_copy(
        update={"enabled": True, "monitor": "val_loss", "patience": 1, "min_delta": 10.0})
    res = tune(cfg, study_dir=tmp_path / "s", plots=False)
    assert [(r.state, r.epochs) for r in res.ran] == [("COMPLETE", 2)] * 5
    assert all(r.values for r in res.ran)
