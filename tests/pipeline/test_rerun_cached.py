"""A rerun with nothing changed skips every stage, also when the run directory is relative
to the working directory and a stage records another stage's file (serve_check -> export's
onnx); results.json and report.md hold the full command that reproduces the run."""

from __future__ import annotations

import contextlib
import json
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.pipeline import load_pipeline, run_pipeline

from pipeline_helpers import lenet_base

runner = CliRunner()

DOC = {
    "name": "small-pipe",
    "base": lenet_base(subset=600, test_subset=200, epochs=3),
    "stages": [{"name": "train"}, {"name": "export", "input": "train"},
               {"name": "serve_check", "input": "export", "samples": 5}],
}
# overrides and a run directory that needs shell quoting, all relative to the working directory
ARGS = ["--set", "base.train.epochs=1", "--set", "base.data.subset=500", "--run-dir", "runs/small pipe"]


def _status(root: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads((root / "results.json").read_text())["stages"]}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One run of ``dlopt run small-pipe.yaml --set ... --run-dir 'runs/small pipe'`` from
    inside the directory (the tester's setup: relative paths everywhere)."""
    cwd = tmp_path_factory.mktemp("cwd")
    (cwd / "small-pipe.yaml").write_text(yaml.safe_dump(DOC, sort_keys=False))
    with contextlib.chdir(cwd):
        res = runner.invoke(app, ["run", "small-pipe.yaml", *ARGS])
    assert res.exit_code == 0, res.output[-800:]
    return cwd


def test_rerun_with_nothing_changed_caches_every_stage(workdir, caplog):
    with contextlib.chdir(workdir):
        res = runner.invoke(app, ["run", "small-pipe.yaml", *ARGS])
    assert res.exit_code == 0, res.output[-800:]
    assert _status(workdir / "runs" / "small pipe") == {n: "cached" for n in ("train", "export", "serve_check")}
    assert "running it again" not in caplog.text


def test_another_stages_file_is_recorded_relative_to_the_stage_dir(workdir):
    stage = workdir / "runs" / "small pipe" / "serve_check"
    rel = json.loads((stage / "stage.json").read_text())["artifacts"]["onnx"]
    assert rel == "../export/model.onnx"
    assert (stage / rel).is_file()


def test_an_old_stage_json_with_a_cwd_relative_path_stays_cached(workdir):
    root = workdir / "runs" / "small pipe"
    path = root / "serve_check" / "stage.json"
    rec = json.loads(path.read_text())
    rec["artifacts"]["onnx"] = "runs/small pipe/export/model.onnx"  # as written before the fix
    path.write_text(json.dumps(rec))
    with contextlib.chdir(workdir):
        cfg, opts = load_pipeline("small-pipe.yaml", ARGS[1:4:2])
        run_pipeline(cfg, opts, source="small-pipe.yaml", root="runs/small pipe", report=False)
    assert _status(root)["serve_check"] == "cached"


def test_reproduce_command_keeps_overrides_and_run_dir(workdir):
    root = workdir / "runs" / "small pipe"
    want = ("dlopt run small-pipe.yaml --set base.train.epochs=1 --set base.data.subset=500 "
            "--run-dir 'runs/small pipe'")
    assert want == shlex.join(["dlopt", "run", "small-pipe.yaml", *ARGS])
    commands = json.loads((root / "results.json").read_text())["commands"]
    assert commands[0] == want
    assert commands[1] == "dlopt report 'runs/small pipe'"
    assert want in (root / "report.md").read_text()


def test_stage_commands_are_shell_quoted_and_repeat_the_stage_options(workdir):
    """Each stage's reproduce command, split as a shell splits it, names existing paths even
    under a run directory with a space, and export's carries its exporter and atol."""
    root = workdir / "runs" / "small pipe"
    cmds = json.loads((root / "results.json").read_text())["stage_commands"]
    train, export, serve = (shlex.split(cmds[n][0]) for n in ("train", "export", "serve_check"))
    assert (workdir / train[2]).is_file() and (workdir / train[4]).is_dir()
    assert (workdir / export[2]).is_dir() and (workdir / export[4]).is_file()
    assert export[5:] == ["--exporter", "dynamo", "--atol", "0.0001"]
    assert (workdir / serve[2]).is_file()


def test_a_fully_cached_rerun_keeps_the_environment_that_produced_the_results(workdir):
    """Nothing runs, so results.json and the report keep the machine and threads recorded
    beside the numbers (99 threads stands for another machine), not the rerun's own."""
    root = workdir / "runs" / "small pipe"
    res = json.loads((root / "results.json").read_text())
    res["environment"]["torch_threads"] = 99
    (root / "results.json").write_text(json.dumps(res))
    with contextlib.chdir(workdir):
        done = runner.invoke(app, ["run", "small-pipe.yaml", *ARGS])
    assert done.exit_code == 0, done.output[-800:]
    assert set(_status(root).values()) == {"cached"}
    assert json.loads((root / "results.json").read_text())["environment"]["torch_threads"] == 99
    assert "- torch threads: 99" in (root / "report.md").read_text()
