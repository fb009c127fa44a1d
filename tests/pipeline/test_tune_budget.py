"""A tune stage's trial budget: more trials continue the study in place, fewer keep it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlopt.pipeline import parse_pipeline, run_pipeline

from pipeline_helpers import lenet_base

# params is the same for every lr: trial 0 stays the best, so the best config does not change
TUNE = {"name": "tune", "trials": 2, "search": {
    "space": {"train.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    "sampler": {"name": "random", "seed": 0}, "pruner": "none",
    "objectives": [{"metric": "params"}]}}


def _run(root: Path, trials: int) -> dict[str, dict]:
    doc = {"name": "budget", "base": lenet_base(subset=300, test_subset=50),
           "stages": [{**TUNE, "trials": trials}, {"name": "retrain", "input": "tune"}]}
    cfg, opts = parse_pipeline(doc)
    run_pipeline(cfg, opts, root=root, report=False)
    return {s["name"]: s for s in json.loads((root / "results.json").read_text())["stages"]}


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("budget") / "run"
    return root, _run(root, 2)


def _trial_stamp(root: Path) -> int:
    return (root / "tune" / "trials" / "0000").stat().st_mtime_ns


def test_more_trials_continue_the_study_and_keep_downstream_cached(first):
    root, before = first
    stamp = _trial_stamp(root)
    after = _run(root, 3)
    assert after["tune"]["status"] == "resumed"
    assert after["tune"]["metrics"]["trials"] == 3
    assert _trial_stamp(root) == stamp  # trial 0 was not run again
    assert after["tune"]["metrics"]["best_params"] == before["tune"]["metrics"]["best_params"]
    assert after["retrain"]["status"] == "cached"


def test_fewer_trials_keep_the_study_and_report_what_it_holds(first):
    root, _ = first
    done = json.loads((root / "tune" / "stage.json").read_text())["metrics"]["trials"]
    after = _run(root, 1)
    assert after["tune"]["metrics"]["trials"] == done
    assert after["retrain"]["status"] == "cached"
    assert _run(root, 1)["tune"]["status"] == "cached"
