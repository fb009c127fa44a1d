"""dlopt compare on compression step outputs: a rejected step's summary keeps its input's
training time and epochs, which the row must not show as the step's own."""

from __future__ import annotations

import json
from pathlib import Path

from dlopt.report import compare_runs


def _step_run(pipeline_run: Path, dest: Path, compression: dict) -> Path:
    # a step's output as dlopt prune/quantize writes it when the guard rejects the step:
    # the input run's summary (here retrain, 2 epochs) plus the decision
    summary = json.loads((pipeline_run / "retrain" / "run" / "summary.json").read_text())
    summary.update(accepted=False, reason="accuracy dropped", compression=compression)
    dest.mkdir()
    (dest / "summary.json").write_text(json.dumps(summary))
    return dest


def _row(md: str, label: str) -> str:
    return next(ln for ln in md.splitlines() if ln.startswith(f"| {label} |"))


def test_rejected_steps_show_their_own_epochs_and_no_input_time(pipeline_run, tmp_path):
    ptq = _step_run(pipeline_run, tmp_path / "int8", {"step": "quantize", "method": "static",
                                                      "options": {"epochs": 1}})
    prune = _step_run(pipeline_run, tmp_path / "pruned", {"step": "prune", "method": "l1",
                                                          "options": {"steps": 1, "finetune_epochs": 1}})
    train = pipeline_run / "train" / "run"
    md = compare_runs([ptq, prune, train], tmp_path / "cmp")["md"].read_text()
    assert "| time (stage wall; run dir: train) |" in md.splitlines()[6]
    int8 = _row(md, "int8").split(" | ")
    assert int8[4] == "–" and "epoch" not in int8[-1], int8
    pruned = _row(md, "pruned").split(" | ")
    assert pruned[4] == "–" and pruned[-1].endswith("; fine-tuned 1 epoch per step |"), pruned
    assert _row(md, "run | run").endswith("| 2 epochs |")  # the training run: label and stage "run"
