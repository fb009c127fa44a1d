"""A retry continues its failed trial's checkpoint; cross-validation inside a study."""

from __future__ import annotations

import json
import logging
import os
import signal

import optuna
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage
from test_cli_tune import _write_config

from dlopt.config import TuneConfig, parse_config
from dlopt.tune import train_objective, tune
from dlopt.tune._outputs import keep_best_artifacts


def _config(tmp_path, *, epochs, **search):
    data = yaml.safe_load(_write_config(tmp_path / "t.yaml", epochs=epochs, **search).read_text())
    data["search"]["space"] = {"train.optim.lr": data["search"]["space"]["train.optim.lr"]}
    return parse_config(data, TuneConfig)


def _study(sdir):
    return optuna.load_study(study_name="cli", storage=JournalStorage(
        JournalFileBackend(str(sdir / "study.log"))))


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _sigterm_at_epoch(n):
    def objective(run_cfg, ctx):
        report = ctx.report

        def report_then_sigterm(epoch, metrics):
            report(epoch, metrics)
            if ctx.number == 0 and epoch == n:
                os.kill(os.getpid(), signal.SIGTERM)  # the loop checkpoints at the next step

        ctx.report = report_then_sigterm
        return train_objective(run_cfg, ctx)

    return objective


def test_a_retry_continues_the_failed_trials_checkpoint_and_reports_every_epoch(tmp_path, caplog):
    from dlopt.train import Terminated

    cfg, sdir = _config(tmp_path, epochs=3, pruner="median"), tmp_path / "s"
    with pytest.raises(Terminated):
        tune(cfg, study_dir=sdir, trials=1, objective=_sigterm_at_epoch(2), plots=False)
    failed = sdir / "trials" / "0000"
    done = _rows(failed)
    assert [r["epoch"] for r in done] == [1, 2]
    # another worker's cleanup (here: keep none) leaves the checkpoint its queued retry needs
    keep_best_artifacts(_study(sdir), sdir, ["maximize"], 0)
    assert (failed / "checkpoints" / "last").exists()
    with caplog.at_level(logging.INFO, logger="dlopt.tune._objective"):
        res = tune(cfg, study_dir=sdir, trials=1, plots=False)
    assert [(r.number, r.retry_of, r.state) for r in res.ran] == [(1, 0, "COMPLETE")]
    assert any("continues the checkpoint" in r.getMessage() for r in caplog.records)
    rows = _rows(sdir / "trials" / "0001")
    # exact resume: the first two epochs are the failed trial's own rows (its timings too),
    # not a retraining from scratch
    assert rows[:2] == done and [r["epoch"] for r in rows] == [1, 2, 3]
    retry = _study(sdir).trials[1]
    assert retry.intermediate_values == {r["epoch"]: r["val_accuracy"] for r in rows}
    assert retry.user_attrs["epochs"] == 3
    assert (failed / "metrics.jsonl").exists() and not (failed / "checkpoints").exists()


@pytest.mark.parametrize(("unsafe", "words"), [("edited", "config changed"),
                                                ("corrupt", "checkpoint cannot be read")])
def test_a_retry_that_cannot_continue_safely_trains_from_scratch_with_a_log_line(
        tmp_path, caplog, unsafe, words):
    from dlopt.train import Terminated

    cfg, sdir = _config(tmp_path, epochs=2), tmp_path / "s"
    with pytest.raises(Terminated):
        tune(cfg, study_dir=sdir, trials=1, objective=_sigterm_at_epoch(1), plots=False)
    if unsafe == "edited":
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": 50})})
    else:  # a weights file cut short, as a full disk leaves it
        weights = sdir / "trials" / "0000" / "checkpoints" / "last" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="dlopt.tune._objective"):
        res = tune(cfg, study_dir=sdir, trials=1, plots=False)
    assert [(r.retry_of, r.state) for r in res.ran] == [(0, "COMPLETE")]
    [line] = [r.getMessage() for r in caplog.records if r.name == "dlopt.tune._objective"]
    assert words in line and line.endswith("training from scratch")
    assert [r["epoch"] for r in _rows(sdir / "trials" / "0001")] == [1, 2]
    assert _rows(sdir / "trials" / "0001")[0]["step"] == (11 if unsafe == "edited" else 6)


def test_cross_validated_trials_keep_their_folds_and_report_every_fold(tmp_path, caplog):
    cfg, sdir = _config(tmp_path, epochs=2, keep_checkpoints=0, pruner="median"), tmp_path / "s"
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"cv": 2})})
    with caplog.at_level(logging.WARNING, logger="optuna"):
        tune(cfg, study_dir=sdir, trials=1, plots=False)
    run = sdir / "trials" / "0000"
    folds = json.loads((run / "summary.json").read_text())["folds"]
    assert folds == ["fold-1", "fold-2"]
    curve = []
    for name in folds:  # each fold's figures stay; its weights and checkpoints go (keep 0)
        assert {p.name for p in (run / name).iterdir()} == {"config.yaml", "metrics.jsonl",
                                                            "summary.json"}
        curve += [r["val_accuracy"] for r in _rows(run / name)]
    # fold 2 follows fold 1 on the pruner's axis instead of being ignored as steps 1 and 2 again
    assert _study(sdir).trials[0].intermediate_values == dict(enumerate(curve, start=1))
    assert not [r for r in caplog.records if "already reported" in r.getMessage()]
