"""No stale outputs: editing the user's data file reruns the stages that read it (its digest is
taken once per run), and a stage that fails on a rerun no longer shows its earlier results in
results.json or the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlopt.errors import RunError
from dlopt.pipeline import parse_pipeline, run_pipeline


def _write_csv(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)).round(3)
    y = np.where(x.sum(axis=1) > 0, "pos", "neg")
    lines = ["a,b,c,y", *(f"{a},{b},{c},{t}" for (a, b, c), t in zip(x, y))]
    path.write_text("\n".join(lines) + "\n")


def _doc(tmp_path: Path, csv: Path, *stages: dict) -> dict:
    return {"name": "csvpipe", "runs_dir": str(tmp_path / "runs"),
            "base": {"data": {"name": f"csv:{csv}", "target": "y"},
                     "model": {"name": "mlp", "width": 8, "depth": 1},
                     "train": {"epochs": 1, "batch_size": 32, "progress": False, "seed": 0}},
            "stages": [{"name": "train"}, *stages]}


def _stages(root: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads((root / "results.json").read_text())["stages"]}


def test_editing_the_data_file_reruns_the_stages_that_read_it(tmp_path):
    csv = tmp_path / "rows.csv"
    _write_csv(csv, 160)
    doc = _doc(tmp_path, csv, {"name": "export", "input": "train"})
    root = run_pipeline(*parse_pipeline(doc), report=False).root
    run_pipeline(*parse_pipeline(doc), report=False)
    assert _stages(root) == {"train": "cached", "export": "cached"}  # unchanged file: cached

    _write_csv(csv, 200, seed=1)  # same path, same config, other rows
    run_pipeline(*parse_pipeline(doc), report=False)
    assert _stages(root) == {"train": "ran", "export": "ran"}


def test_a_failed_rerun_drops_the_stages_old_results_from_results_and_report(tmp_path):
    csv = tmp_path / "rows.csv"
    _write_csv(csv, 160)
    check = {"name": "serve_check", "input": "export", "samples": 3}
    doc = _doc(tmp_path, csv, {"name": "export", "input": "train"}, check)
    root = run_pipeline(*parse_pipeline(doc)).root
    assert "3/3 served answers" in (root / "report.md").read_text()

    failing = _doc(tmp_path, csv, {"name": "export", "input": "train"}, {**check, "startup_timeout_s": 0.001})
    with pytest.raises(RunError, match="stage 'serve_check': the server was not ready"):
        run_pipeline(*parse_pipeline(failing))
    assert _stages(root) == {"train": "cached", "export": "cached"}
    assert "served answers" not in (root / "report.md").read_text()
    assert "served answers" not in (root / "report.html").read_text()


def test_downstream_stages_follow_what_a_forced_stage_produced(tmp_path):
    """Later keys hash what an input produced (its digest), not only its config: a forced
    rerun with identical results keeps the export cached; one with other results (here its
    recorded digest stands for weights a nondeterministic rerun changed) reruns the export."""
    csv = tmp_path / "rows.csv"
    _write_csv(csv, 160)
    doc = _doc(tmp_path, csv, {"name": "export", "input": "train"})
    root = run_pipeline(*parse_pipeline(doc), report=False).root
    digest = json.loads((root / "train" / "stage.json").read_text())["digest"]
    run_pipeline(*parse_pipeline(doc), force=["train"], report=False)
    assert _stages(root) == {"train": "ran", "export": "cached"}  # deterministic: same weights
    assert json.loads((root / "train" / "stage.json").read_text())["digest"] == digest

    rec = json.loads((root / "train" / "stage.json").read_text())
    rec["digest"] = "0" * 16
    (root / "train" / "stage.json").write_text(json.dumps(rec))
    run_pipeline(*parse_pipeline(doc), report=False)
    assert _stages(root) == {"train": "cached", "export": "ran"}


def test_one_pipeline_run_reads_the_data_files_sizes_and_times_once(tmp_path, monkeypatch):
    """Every stage that uses the base hashed the data folder again (a directory walk per stage
    over an image folder); the digest is now taken once per run, and the keys stay the same."""
    from dlopt.pipeline import _fingerprint

    csv = tmp_path / "rows.csv"
    _write_csv(csv, 160)
    walked: list[Path] = []
    digest = _fingerprint._digest
    monkeypatch.setattr(_fingerprint, "_digest", lambda path: walked.append(path) or digest(path))
    doc = _doc(tmp_path, csv, {"name": "lr_find", "steps": 5})
    root = run_pipeline(*parse_pipeline(doc), report=False).root
    assert walked == [csv]
    walked.clear()
    run_pipeline(*parse_pipeline(doc), report=False)  # a new run takes it again: edits count
    assert walked == [csv] and _stages(root) == {"train": "cached", "lr_find": "cached"}
