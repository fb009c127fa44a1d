"""What a pipeline run records: the pipeline copy names the data files it read, and stage
records hold their own figures and commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from dlopt.pipeline import parse_pipeline, run_pipeline


def _write_csv(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)).round(3)
    y = np.where(x.sum(axis=1) > 0, "pos", "neg")
    path.write_text("\n".join(["a,b,c,y", *(f"{a},{b},{c},{t}" for (a, b, c), t in zip(x, y))]) + "\n")


def _statuses(root: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads((root / "results.json").read_text())["stages"]}


def test_pipeline_copy_records_absolute_data_paths_and_rerun_stays_cached(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_csv(tmp_path / "rows.csv", 120)
    _write_csv(tmp_path / "other.csv", 120, seed=1)
    doc = {"name": "rel", "runs_dir": "runs",
           "base": {"data": {"name": "csv:rows.csv", "target": "y"}, "model": {"name": "mlp", "width": 8, "depth": 1},
                    "train": {"epochs": 1, "batch_size": 32, "progress": False, "seed": 0}},
           "stages": [{"name": "train"},
                      {"name": "other", "type": "train", "config": {"data": {"name": "csv:other.csv"}}}]}
    root = run_pipeline(*parse_pipeline(doc), report=False).root
    copy = yaml.safe_load((root / "pipeline.yaml").read_text())
    assert copy["base"]["data"]["name"] == f"csv:{tmp_path / 'rows.csv'}"
    assert copy["stages"][1]["config"]["data"]["name"] == f"csv:{tmp_path / 'other.csv'}"
    assert copy["base"]["model"] == doc["base"]["model"]

    run_pipeline(*parse_pipeline(doc), report=False)
    assert _statuses(root) == {"train": "cached", "other": "cached"}


def _write_regression_csv(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3)).round(3)
    y = (x @ [1.5, -2.0, 0.5] + 0.1 * rng.normal(size=rows)).round(3)
    path.write_text("\n".join(["a,b,c,y", *(f"{a},{b},{c},{t}" for (a, b, c), t in zip(x, y))]) + "\n")


@pytest.fixture(scope="module")
def reg_root(tmp_path_factory) -> Path:
    """A regression pipeline: train, a two-objective tune stage, bench of the trained run."""
    tmp = tmp_path_factory.mktemp("reg")
    csv = tmp / "reg.csv"
    _write_regression_csv(csv, 200)
    search = {"space": {"model.width": [4, 8]}, "sampler": {"name": "grid"}, "pruner": "none",
              "objectives": [{"metric": "val_r2"}, {"metric": "params"}]}
    doc = {"name": "reg", "runs_dir": str(tmp / "runs"),
           "base": {"data": {"name": f"csv:{csv}", "target": "y"}, "model": {"name": "mlp", "width": 8, "depth": 1},
                    "train": {"epochs": 2, "batch_size": 32, "progress": False, "seed": 0}},
           "stages": [{"name": "train"}, {"name": "tune", "trials": 2, "search": search},
                      {"name": "bench", "inputs": ["train"], "samples": 64, "min_runs": 3, "min_seconds": 0.05,
                       "rounds": 1}]}
    return run_pipeline(*parse_pipeline(doc), report=False).root


def _results(root: Path) -> tuple[dict, dict[str, dict]]:
    results = json.loads((root / "results.json").read_text())
    return results, {s["name"]: s for s in results["stages"]}


def test_tune_stage_records_its_rerun_line_and_pareto_plot(reg_root):
    results, stages = _results(reg_root)
    want = f"{results['commands'][0]} --force tune"
    assert stages["tune"]["commands"] == [want] and results["stage_commands"]["tune"] == [want]
    assert json.loads((reg_root / "tune" / "stage.json").read_text())["commands"] == [want]
    assert stages["tune"]["artifacts"]["pareto_front"] == "plots/pareto_front.png"
    assert (reg_root / "tune" / "plots" / "pareto_front.png").is_file()


def test_bench_stage_copies_each_models_r2(reg_root):
    _, stages = _results(reg_root)
    bench = json.loads((reg_root / "bench" / "bench.json").read_text())["contestants"]["train"]
    r2 = next(iter(bench.values()))["r2"]
    assert r2 is not None and stages["bench"]["metrics"]["models"]["train"]["r2"] == r2
