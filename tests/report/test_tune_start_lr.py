"""results.json says whether lr_find's suggestion reached the tune trials: with
train.optim.lr as a search axis (conftest's pipeline) every trial samples its own lr."""

from __future__ import annotations

import json


def test_a_searched_lr_leaves_the_suggestion_unused(pipeline_run):
    stages = {s["name"]: s for s in json.loads((pipeline_run / "results.json").read_text())["stages"]}
    tune = stages["tune"]["metrics"]
    assert tune["suggested_lr"] == stages["lr_find"]["metrics"]["suggested_lr"]
    assert tune["start_lr"] is None
