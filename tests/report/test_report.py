"""The report of a real small pipeline: results.json, report.md, report.html, compare."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.report import pareto_front, per_class_rows

runner = CliRunner()


def test_pareto_front_keeps_only_undominated_points():
    # (cost, accuracy): b is dominated by a (cheaper and more accurate); c is the slowest but best
    pts = [(1.0, 0.90), (2.0, 0.85), (3.0, 0.95), (1.0, 0.80)]
    assert pareto_front(pts) == [0, 2]


def test_per_class_rows_from_confusion_matrix():
    rows = per_class_rows([[8, 2], [1, 9]], ["cat", "dog"])
    assert rows[0]["class"] == "cat" and rows[0]["support"] == 10
    assert abs(rows[0]["precision"] - 8 / 9) < 1e-12 and abs(rows[0]["recall"] - 0.8) < 1e-12
    assert abs(rows[1]["f1"] - 2 * (9 / 11) * 0.9 / (9 / 11 + 0.9)) < 1e-12


def test_results_json_holds_every_stage_with_metrics(pipeline_run):
    res = json.loads((pipeline_run / "results.json").read_text())
    names = [s["name"] for s in res["stages"]]
    assert names == ["train", "lr_find", "tune", "retrain", "export", "bench", "serve_check"]
    by = {s["name"]: s for s in res["stages"]}
    assert 0.0 < by["retrain"]["metrics"]["accuracy"] <= 1.0
    assert by["retrain"]["metrics"]["params"] > 0 and by["retrain"]["metrics"]["macs"] > 0
    assert by["lr_find"]["metrics"]["suggested_lr"] > 0
    assert by["tune"]["metrics"]["trials"] == 2
    assert by["serve_check"]["metrics"]["equal"] == 10 and by["serve_check"]["metrics"]["passed"]
    lat = by["bench"]["timings"]["models"]
    assert set(lat) == {"train", "retrain"}
    assert lat["train"]["1"]["verdict"] == "baseline" and lat["retrain"]["64"]["p50_ms"] > 0
    assert res["environment"]["python"] and res["commands"][0].startswith("dlopt run")


def test_markdown_report_has_table_and_plot_files(pipeline_run):
    md = (pipeline_run / "report.md").read_text()
    assert "| stage | type |" in md and "| retrain | retrain |" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) >= 6
    for link in links:
        assert (pipeline_run / link).stat().st_size > 1000


def test_html_is_self_contained_with_decodable_pngs(pipeline_run):
    page = (pipeline_run / "report.html").read_text()
    assert 'id="stage-table"' in page
    assert not re.search(r"""(src|href)=['"](https?:|//)""", page)  # nothing fetched from outside
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) >= 6
    for b64 in images:
        assert base64.b64decode(b64).startswith(b"\x89PNG")


def test_report_and_compare_verbs(pipeline_run, tmp_path):
    (pipeline_run / "report.html").unlink()
    res = runner.invoke(app, ["report", str(pipeline_run)])
    assert res.exit_code == 0, res.output
    assert (pipeline_run / "report.html").exists() and "retrain" in res.output

    res = runner.invoke(app, ["compare", str(pipeline_run), str(pipeline_run / "train" / "run"),
                              "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "tiny" in page and "data:image/png;base64," in page


def test_report_of_a_non_run_is_one_line_exit_2(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no results.json" in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1


def test_a_malformed_results_file_or_an_unusable_out_is_one_line_exit_2(tmp_path):
    for doc in ([1, 2], {"stages": [{"name": 5}]}, {"stages": [{"name": "t", "type": "train", "metrics": 3}]}):
        (tmp_path / "results.json").write_text(json.dumps(doc))
        for args in (["report", str(tmp_path)], ["compare", str(tmp_path), str(tmp_path)]):
            res = runner.invoke(app, args)
            assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
            assert "is not a dlopt results file" in res.output
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text("[]")  # a training run's summary that is not a mapping
    res = runner.invoke(app, ["compare", str(run), str(run)])
    assert res.exit_code == 2 and f"{run}: neither results.json nor a readable summary.json" in res.output
    assert f"({run / 'summary.json'}: []: need a mapping)" in res.output and res.output.count("\n") == 1


def test_stage_table_names_the_batch_sizes_the_bench_timed():
    """A bench at batch sizes 1 and 8 fills the latency columns for b1 and b8 (not a b64
    column of dashes); with no bench stage the columns keep the defaults."""
    from dlopt.report._tables import latency_sizes, stage_columns, stage_rows, text_table

    entry = {"p50_ms": 0.5, "speedup": 1.2, "verdict": "faster"}
    res = {"stages": [
        {"name": "train", "type": "train", "metrics": {"accuracy": 0.9}},
        {"name": "bench", "type": "bench", "metrics": {},
         "timings": {"models": {"train": {"1": {**entry, "p50_ms": 0.1}, "8": entry}}}},
    ]}
    assert latency_sizes(res) == (1, 8) and latency_sizes({"stages": []}) == (1, 64)
    cols = stage_columns(latency_sizes(res))
    row = stage_rows(res)[0]
    assert (row["p50_lo"], row["p50_hi"]) == (0.1, 0.5)
    text = text_table(stage_rows(res), cols)
    assert "p50 ms (b8)" in text and "b64" not in text and "1.20x faster" in text


def test_latency_plot_uses_the_smallest_batch_the_bench_timed(pipeline_run, tmp_path):
    """A bench without batch 1 (here 2 and 16) still gets its accuracy-vs-latency plot, with
    the batch size it shows in the axis label."""
    import shutil

    from dlopt.report import build_report

    root = tmp_path / "run"
    shutil.copytree(pipeline_run, root)
    res = json.loads((root / "results.json").read_text())
    for s in res["stages"]:
        if s["type"] == "bench":
            models = s["timings"]["models"]
            s["timings"]["models"] = {n: {"2": per["1"], "16": per["64"]} for n, per in models.items()}
    (root / "results.json").write_text(json.dumps(res))
    paths = build_report(root)
    assert (paths["files"] / "pareto-latency.png").stat().st_size > 1000
    assert "p50 ms (b2)" in paths["md"].read_text()


def test_a_bench_at_one_batch_size_gets_one_pair_of_latency_columns():
    from dlopt.report._tables import latency_sizes, markdown_table, stage_columns, stage_rows

    res = {"stages": [
        {"name": "train", "type": "train", "metrics": {"accuracy": 0.9}},
        {"name": "bench", "type": "bench", "metrics": {},
         "timings": {"models": {"train": {"4": {"p50_ms": 0.25, "speedup": 1.0, "verdict": "baseline"}}}}},
    ]}
    md = markdown_table(stage_rows(res), stage_columns(latency_sizes(res)))
    assert md.count("p50 ms (b4)") == 1 and md.count("speedup b4") == 1
    assert md.splitlines()[2].count("0.250") == 1


def test_curves_of_regression_runs_plot_r2_without_matplotlib_warnings():
    """Regression runs log val_r2, not val_accuracy: the middle panel shows it, and no empty
    legend warns on the user's terminal."""
    import warnings

    from dlopt.report._plots import _curve_metric, curves_plot

    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_mse": 1.2 / e, "val_r2": 0.1 * e,
             "lr": 0.01} for e in (1, 2, 3)]
    assert _curve_metric({"reg": rows}, "val_accuracy") == "val_r2"
    assert _curve_metric({"cls": [{"val_accuracy": 0.5}], "reg": rows}, "val_accuracy") == "val_accuracy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert curves_plot({"reg": rows}).startswith(b"\x89PNG")
        assert curves_plot({"no-metric": [{"epoch": 1, "train_loss": 1.0}]}).startswith(b"\x89PNG")


def test_regression_stages_show_their_test_r2_in_the_note():
    """A regression run has no accuracy: its row says its test R^2 instead of only dashes."""
    from dlopt.report._tables import stage_rows

    res = {"stages": [
        {"name": "train", "type": "train", "metrics": {"accuracy": None, "test_r2": 0.4123, "task": "regression"}},
        {"name": "prune", "type": "prune", "metrics": {"test_r2": 0.4, "accepted": True}},
        {"name": "cls", "type": "train", "metrics": {"accuracy": 0.9, "test_r2": None}},
    ]}
    notes = [r["note"] for r in stage_rows(res)]
    assert notes == ["test r2 0.4123", "test r2 0.4000; accepted", ""]


def test_cost_plots_use_the_accuracy_the_stage_table_shows(pipeline_run):
    """The bench measures accuracy on its sample subset; the plots show the same figure for
    a model as its table row (the stage's own test accuracy), never a second one."""
    from dlopt.report._build import _pareto_points

    res = json.loads((pipeline_run / "results.json").read_text())
    bench = next(s for s in res["stages"] if s["type"] == "bench")
    for name in ("train", "retrain"):
        bench["metrics"]["models"][name]["accuracy"] = 0.01  # a subset figure unlike the stage's
    points = _pareto_points(res)
    own = {s["name"]: s["metrics"]["accuracy"] for s in res["stages"] if s["name"] in ("train", "retrain")}
    assert {n: p["accuracy"] for n, p in points.items()} == own
    assert all(p["latency"] > 0 and p["size"] > 0 for p in points.values())


def test_sweep_note_shows_percentages_only_for_fraction_metrics():
    """A sweep over test loss (or R^2) is not a percentage: 0.35 loss must not read 35.00%."""
    from dlopt.report._tables import stage_rows

    def sweep(metric: str) -> dict:
        return {"name": "s", "type": "sweep", "metrics": {
            "metric": metric, "variants": {"sgd": {"mean": 0.35, "std": 0.01}, "adam": {"mean": None, "std": None}}}}

    loss, acc = (stage_rows({"stages": [sweep(m)]})[0]["note"] for m in ("loss", "accuracy"))
    assert loss == "test loss: sgd 0.35±0.01; adam –"
    assert acc == "test accuracy: sgd 35.00±1.00%; adam –"


def test_compare_tells_two_runs_of_one_pipeline_apart(pipeline_run, tmp_path):
    """Two runs of the same pipeline (other --run-dir, other --set) are labelled by their
    paths, not both by the pipeline's name."""
    a, b = tmp_path / "a" / "tiny", tmp_path / "b" / "tiny"
    for d in (a, b):
        shutil.copytree(pipeline_run, d, ignore=shutil.ignore_patterns("checkpoints", "trials", "*.onnx"))
    res = runner.invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert f"dlopt compare: {a} vs {b}" in md
    stages = len(json.loads((a / "results.json").read_text())["stages"])
    for run in (a, b):
        assert sum(ln.startswith(f"| {run} |") for ln in md.splitlines()) == stages


def test_a_rebuilt_report_drops_plot_files_it_no_longer_shows(pipeline_run):
    stale = pipeline_run / "report-files" / "sweep-gone.png"  # a stage an earlier report had
    stale.write_bytes(b"\x89PNG")
    assert runner.invoke(app, ["report", str(pipeline_run)]).exit_code == 0
    md = (pipeline_run / "report.md").read_text()
    assert not stale.exists()
    assert {p.name for p in (pipeline_run / "report-files").iterdir()} == \
        {Path(link).name for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)}


def _stage(doc: dict, name: str) -> dict:
    return next(s for s in doc["stages"] if s["name"] == name)


# a hand-edited results.json, at several depths: (how, the key path and words of the line)
_CORRUPTIONS = [
    (lambda d: _stage(d, "bench")["metrics"].update(models=5), "stages[5] 'bench' metrics.models=5: need a mapping"),
    (lambda d: _stage(d, "bench")["timings"]["models"]["train"].update({"1": 3}),
     "stages[5] 'bench' timings.models.train.1=3: need a mapping"),
    (lambda d: _stage(d, "tune")["metrics"].update(best_values=[1]), "stages[2] 'tune' metrics.best_values=[1]: need a mapping"),
    (lambda d: _stage(d, "lr_find")["metrics"].update(suggested_lr=None),
     "stages[1] 'lr_find' metrics.suggested_lr=None: need a number"),
    (lambda d: _stage(d, "export")["metrics"].update(parity_max_abs_diff="0.1"),
     "stages[4] 'export' metrics.parity_max_abs_diff='0.1': need a number"),
    (lambda d: _stage(d, "train")["artifacts"].update(run=3), "stages[0] 'train' artifacts.run=3: need a string"),
    (lambda d: _stage(d, "retrain").update(inputs="tune"), "stages[3] 'retrain' inputs='tune': need a list"),
    (lambda d: d["stages"].__setitem__(1, 5), "stages[1]=5: need a mapping"),
    (lambda d: _stage(d, "train").pop("name"), "stages[0] name: missing"),
    (lambda d: d["environment"].update(cpu="x86"), "environment.cpu='x86': need a mapping"),
    (lambda d: d.update(commands=[1]), "commands[0]=1: need a string"),
    (lambda d: d.update(stage_commands={"train": "dlopt train"}), "stage_commands.train='dlopt train': need a list"),
    (lambda d: d.update(stages={}), "stages={}: need a list"),
]


def test_a_hand_corrupted_results_file_is_one_line_naming_the_key(pipeline_run, tmp_path):
    good = json.loads((pipeline_run / "results.json").read_text())
    for i, (corrupt, words) in enumerate(_CORRUPTIONS):
        run = tmp_path / f"run{i}"
        run.mkdir()
        doc = json.loads(json.dumps(good))
        corrupt(doc)
        (run / "results.json").write_text(json.dumps(doc))
        for args in (["report", str(run)], ["compare", str(run), str(pipeline_run), "--out", str(tmp_path / "c")]):
            res = runner.invoke(app, args)
            assert res.exit_code == 2 and res.output.count("\n") == 1, (words, res.output)
            assert f"error: {run / 'results.json'} is not a dlopt results file: {words}" in res.output
    (run / "results.json").write_text('{"stages": [')
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 2 and "results.json is not JSON: Expecting value at line 1, column 13" in res.output


def test_damaged_stage_files_are_left_out_of_the_report_with_a_warning(pipeline_run, tmp_path, caplog):
    from dlopt.report import build_report

    run = tmp_path / "run"
    shutil.copytree(pipeline_run, run, ignore=shutil.ignore_patterns("checkpoints", "*.onnx"))
    (run / "lr_find" / "lr_find.json").write_text(json.dumps({"lrs": [1e-3, 1e-2], "losses": [1.0]}))
    (run / "retrain" / "run" / "summary.json").write_text(json.dumps({"confusion_matrix": "none"}))
    (run / "train" / "run" / "metrics.jsonl").write_text("1\n2\n")
    caplog.set_level("WARNING", logger="dlopt.report")
    build_report(run)
    warned = [r.getMessage() for r in caplog.records]
    assert any("lr_find.json: 2 lrs, 1 losses and 0 smoothed; need one of each per step" in w for w in warned)
    assert any("summary.json: confusion_matrix='none': need a list" in w for w in warned)
    assert any("metrics.jsonl: [0]=1: need a mapping" in w for w in warned)
    md = (run / "report.md").read_text()
    assert "LR finder" not in md and "Final model" not in md and "| retrain | retrain |" in md


def test_a_results_file_whose_inputs_loop_still_gets_its_report():
    # export -> retrain -> export with no run between: following inputs to the deployed run
    # used to loop forever (a daemon thread, so the test ends even then)
    import threading

    from dlopt.report._build import _final_stage

    results = {"stages": [
        {"name": "export", "type": "export", "inputs": ["retrain"], "artifacts": {"onnx": "m.onnx"}},
        {"name": "retrain", "type": "export", "inputs": ["export"], "artifacts": {}},
        {"name": "train", "type": "train", "inputs": [], "artifacts": {"run": "run"}}]}
    found = []
    worker = threading.Thread(target=lambda: found.append(_final_stage(results)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert found and found[0]["name"] == "train"  # no deployed run: the last run stage


def test_a_report_that_cannot_be_written_is_one_line_exit_2(pipeline_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(pipeline_run / "results.json", run / "results.json")
    (run / "report.html").mkdir()  # where the page goes
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert f"error: cannot write the report in {run}: Is a directory: {run / 'report.html'}" in res.output
    res = runner.invoke(app, ["report", str(run / "results.json")])  # the file, not its folder
    assert res.exit_code == 2 and "results.json: no results.json; allowed: a pipeline run directory" in res.output
