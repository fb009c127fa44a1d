"""A results.json damaged at leaf level (a string where a figure belongs) is one line naming
the file and key, exit 2, not a table of "–" cells; the Environment section names the load
the bench ran under."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dlopt.cli import app

runner = CliRunner()

# conftest's pipeline: stages[3] is retrain, stages[5] is bench (train vs retrain)
_LEAVES = [
    (lambda d: d["stages"][5]["timings"]["models"]["retrain"]["1"].update(p50_ms="fast"),
     "stages[5] 'bench' timings.models.retrain.1.p50_ms='fast': need a number"),
    (lambda d: d["stages"][5]["timings"]["models"]["retrain"]["64"].update(speedup="x"),
     "stages[5] 'bench' timings.models.retrain.64.speedup='x': need a number"),
    (lambda d: d["stages"][3]["metrics"].update(accuracy="high"),
     "stages[3] 'retrain' metrics.accuracy='high': need a number"),
    (lambda d: d["stages"][5]["metrics"]["models"]["train"].update(size_bytes="big"),
     "stages[5] 'bench' metrics.models.train.size_bytes='big': need a number"),
]


@pytest.mark.parametrize(("corrupt", "words"), _LEAVES)
def test_a_wrong_type_in_a_figure_is_one_line_naming_the_key(pipeline_run, tmp_path, corrupt, words):
    doc = json.loads((pipeline_run / "results.json").read_text())
    corrupt(doc)
    (tmp_path / "results.json").write_text(json.dumps(doc))
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert f"{tmp_path / 'results.json'} is not a dlopt results file: {words}" in res.output


def test_null_figures_still_draw(pipeline_run, tmp_path):
    doc = json.loads((pipeline_run / "results.json").read_text())
    doc["stages"][3]["metrics"]["accuracy"] = None
    (tmp_path / "results.json").write_text(json.dumps(doc))
    assert runner.invoke(app, ["report", str(tmp_path)]).exit_code == 0


def test_environment_shows_the_load_average_the_bench_ran_under(pipeline_run):
    bench = json.loads((pipeline_run / "bench" / "bench.json").read_text())
    load = bench["environment"]["load_average"][0]
    md = (pipeline_run / "report.md").read_text()
    assert f"- load average at the bench: {load:.1f}" in md
