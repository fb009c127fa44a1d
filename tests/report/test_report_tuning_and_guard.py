"""The report of a pipeline with a two-objective tune stage and a prune stage its guard
rejects: the rejection in every stage table, the objectives' numbers, the study's Pareto
front, a tune command that runs, and one label for models on one spot."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.pipeline import parse_pipeline, run_pipeline
from dlopt.report import build_report, load_results, stage_text

runner = CliRunner()

PIPELINE = {
    "name": "moguard",
    "base": {"data": {"name": "mnist", "subset": 600, "test_subset": 100},
             "model": {"name": "lenet5", "width": 0.5},
             "train": {"epochs": 1, "batch_size": 64, "progress": False, "seed": 0,
                       "optim": {"name": "adam", "lr": 0.003}}},
    "stages": [
        {"name": "train"},
        {"name": "tune", "trials": 2,
         "search": {"space": {"model.width": [0.25, 0.5]}, "sampler": {"name": "grid"}, "pruner": "none",
                    "objectives": [{"metric": "val_accuracy"}, {"metric": "params"}]}},
        # most of the MACs gone, no fine-tuning, no drop allowed: the guard keeps the input
        {"name": "prune", "input": "train", "target": "macs=0.05", "finetune_epochs": 0, "max_drop_pt": 0},
    ],
}


@pytest.fixture(scope="module")
def mo_run(tmp_path_factory) -> Path:
    """Root of the finished pipeline, its report written."""
    runs = tmp_path_factory.mktemp("mo-runs")
    cfg, opts = parse_pipeline({**PIPELINE, "runs_dir": str(runs)})
    root = run_pipeline(cfg, opts).root
    assert (root / "report.md").is_file()
    return root


def _md_row(md: str, stage: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {stage} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_a_rejected_step_says_so_in_the_terminal_and_the_report_tables(mo_run):
    rows = {ln.split()[0]: ln.split() for ln in stage_text(mo_run).splitlines()[2:]}
    assert rows["prune"][2:4] == ["ran,", "rejected"] and "rejected" not in rows["train"]
    md = (mo_run / "report.md").read_text()
    assert _md_row(md, "prune")[2] == "ran, rejected" and _md_row(md, "train")[2] == "ran"


def test_the_tune_note_prints_a_parameter_count_as_an_integer(mo_run):
    best = next(s for s in load_results(mo_run)["stages"] if s["name"] == "tune")["metrics"]["best_values"]
    assert isinstance(best["params"], float)  # optuna keeps every objective as a float
    note = _md_row((mo_run / "report.md").read_text(), "tune")[-1]
    assert f"(val_accuracy {best['val_accuracy']:.4g}, params {int(best['params'])}) of 2 trials" in note, note


def test_a_two_objective_tune_stage_shows_the_studys_pareto_front(mo_run):
    md = (mo_run / "report.md").read_text()
    assert "(report-files/pareto-front-tune.png)" in md
    png = (mo_run / "report-files" / "pareto-front-tune.png").read_bytes()
    assert png == (mo_run / "tune" / "plots" / "pareto_front.png").read_bytes()


def test_models_on_one_spot_of_a_cost_plot_share_one_label(mo_run):
    from dlopt.report._build import _pareto_points
    from dlopt.report._plots import _label_layout

    points = _pareto_points(load_results(mo_run))
    # the rejected prune delivers its input: train's accuracy and size
    assert points["prune"] == points["train"]
    labels = _label_layout([(n, p["size"], p["accuracy"]) for n, p in points.items()])
    assert [t for t, *_ in labels] == ["train, prune"]


def test_labels_of_nearby_points_rise_above_each_other():
    from dlopt.report._plots import _label_layout

    pts = [("a", 1.0, 80.0), ("b", 1.0, 80.0), ("c", 1.3, 80.3), ("d", 10.0, 90.0), ("e", 1.6, 80.2)]
    layout = {t: rise for t, _, _, rise in _label_layout(pts)}
    assert set(layout) == {"a, b", "c", "d", "e"}
    assert len({layout["a, b"], layout["c"], layout["e"]}) == 3 and layout["d"] == 5


def test_the_tune_stages_reproduce_command_runs(mo_run, tmp_path):
    md = (mo_run / "report.md").read_text()
    assert "<config with search:>" not in md
    cmd = next(ln for ln in md.splitlines() if ln.startswith("# tune: ")).removeprefix("# tune: ")
    args = shlex.split(cmd)
    assert args[:2] == ["dlopt", "run"] and args[-2:] == ["--force", "tune"] and "--run-dir" in args
    copy = tmp_path / "copy"  # the command redoes the study: on a copy, the other tests read the original
    shutil.copytree(mo_run, copy)
    args = [str(copy) if a == str(mo_run) else a.replace(str(mo_run) + "/", str(copy) + "/") for a in args]
    res = runner.invoke(app, args[1:] + ["--no-report"])
    assert res.exit_code == 0, res.output
    rows = {ln.split()[0]: ln.split() for ln in res.stdout.splitlines() if ln.split()[:1] in (["tune"], ["train"])}
    assert rows["tune"][2] == "ran" and rows["train"][2] == "cached"
    build_report(copy)
    assert "pareto-front-tune.png" in (copy / "report.md").read_text()
