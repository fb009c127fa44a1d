"""Early stopping, a plateau schedule or multistep milestones the run is too short for can
never act: fit says so in one warning line at its start (no refusal: a quick run of a longer
recipe is fair), and stays quiet where they can act. Each case trains a real tiny run and
checks the claim against what the run did."""

from __future__ import annotations

import json
import logging

import pytest

from dlopt.train import train_run
from dlopt.train.schedules import plateau_decision

from train_helpers import tiny_config

NEVER = "it can never trigger"


def _fit(tmp_path, caplog, **train) -> tuple[list[str], dict]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dlopt.train"):
        res = train_run(tiny_config(**train), run_dir=tmp_path / "run")
    return [r.getMessage() for r in caplog.records if NEVER in r.getMessage()], res.summary


@pytest.mark.parametrize("patience, max_steps, warned", [(2, None, True), (1, 6, True), (1, None, False)])
def test_early_stopping_patience_beyond_the_run(tmp_path, caplog, patience, max_steps, warned) -> None:
    # 2 epochs of 6 steps; max_steps=6 ends the run after one
    lines, summary = _fit(tmp_path, caplog, max_steps=max_steps,
                          early_stopping={"enabled": True, "patience": patience, "monitor": "val_accuracy",
                                          "mode": "max", "min_delta": 1.0})  # nothing improves by 1.0
    epochs = 1 if max_steps else 2
    assert lines == ([f"train.early_stopping.patience={patience} with a run of {epochs} epoch(s): it stops after "
                      f"{patience} epochs without improvement, so {NEVER}"] if warned else [])
    assert summary["stop_reason"].startswith("early stopping") is not warned


@pytest.mark.parametrize("milestones, warned", [([2, 5], True), ([1], False)])
def test_multistep_milestones_beyond_the_run(tmp_path, caplog, milestones, warned) -> None:
    lines, summary = _fit(tmp_path, caplog, schedule={"name": "multistep", "milestones": milestones})
    assert len(lines) == warned and all(ln.startswith(f"train.schedule.milestones={milestones} with a run of "
                                                      "2 epoch(s): a milestone m lowers") for ln in lines)
    lrs = [json.loads(ln)["lr"] for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert (lrs[1] == lrs[0]) is warned


@pytest.mark.parametrize("patience, warned", [(1, True), (0, False)])
def test_plateau_patience_beyond_the_run(tmp_path, caplog, patience, warned) -> None:
    lines, _ = _fit(tmp_path, caplog, epochs=2, schedule={"name": "plateau", "patience": patience})
    assert lines == ([f"train.schedule.patience={patience} with a run of 2 epoch(s): plateau lowers the lr once "
                      f"{patience + 1} epochs in a row miss the best, which the first epoch sets, so it needs "
                      f"{patience + 2} epochs: {NEVER}"] if warned else [])
    best, bad, reduced_at = None, 0, None  # the rule on a metric that never improves
    for epoch in range(1, 10):
        best, bad, reduce = plateau_decision(1.0, best=best, bad_epochs=bad, patience=patience, mode="min")
        reduced_at = reduced_at or (epoch if reduce else None)
    assert reduced_at == patience + 2

