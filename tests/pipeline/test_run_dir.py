"""The run directory belongs to one ``dlopt run`` at a time (a second one is refused, the
lock goes with the run, a crash included); ``--no-report`` on a rerun that changes results
removes the earlier, now stale report; the environment records uncommitted changes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.deploy._env import _git_dirty
from dlopt.pipeline import load_pipeline, run_pipeline

from pipeline_helpers import lenet_base

runner = CliRunner()

DOC = {
    "name": "rundir",
    "base": lenet_base(subset=300),
    "stages": [{"name": "lr_find", "steps": 5}],
}
REPORT = ("report.html", "report.md", "report-files")


@pytest.fixture
def pipe(tmp_path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**DOC, "runs_dir": str(tmp_path / "runs")}, sort_keys=False))
    return path


def _root(pipe: Path) -> Path:
    return pipe.parent / "runs" / "rundir"


def _statuses(root: Path) -> list[str]:
    return [s["status"] for s in json.loads((root / "results.json").read_text())["stages"]]


def test_a_second_run_on_a_directory_in_use_is_refused_in_one_line(pipe):
    second = {}

    def started(name: str, how: str) -> None:  # the first run holds the directory now
        second["res"] = runner.invoke(app, ["run", str(pipe)])

    cfg, opts = load_pipeline(pipe)
    run_pipeline(cfg, opts, source=pipe, report=False, on_start=started)
    res = second["res"]
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1
    assert f"run directory {_root(pipe)}: another dlopt run holds it" in res.output
    assert _statuses(_root(pipe)) == ["ran"]  # the first run's stage, untouched by the second
    again = runner.invoke(app, ["run", str(pipe), "--no-report"])  # released when the run ended
    assert again.exit_code == 0, again.output
    assert _statuses(_root(pipe)) == ["cached"]


def test_a_run_that_crashes_releases_the_directory(pipe):
    def crash(name: str, how: str) -> None:
        raise RuntimeError("crashed")

    cfg, opts = load_pipeline(pipe)
    with pytest.raises(RuntimeError):
        run_pipeline(cfg, opts, source=pipe, report=False, on_start=crash)
    res = runner.invoke(app, ["run", str(pipe), "--no-report"])
    assert res.exit_code == 0, res.output


def test_no_report_on_a_rerun_that_changes_results_removes_the_stale_report(pipe):
    root = _root(pipe)
    assert runner.invoke(app, ["run", str(pipe)]).exit_code == 0
    assert all((root / n).exists() for n in REPORT)
    res = runner.invoke(app, ["run", str(pipe), "--no-report", "--set", "stages.lr_find.steps=6"])
    assert res.exit_code == 0, res.output
    assert not any((root / n).exists() for n in REPORT)
    assert f"removed the earlier report (it no longer matched results.json); write one with: dlopt report {root}" \
        in res.output
    # nothing ran: the report written since still matches the results and stays
    assert runner.invoke(app, ["report", str(root)]).exit_code == 0
    res = runner.invoke(app, ["run", str(pipe), "--no-report", "--set", "stages.lr_find.steps=6"])
    assert res.exit_code == 0 and "removed" not in res.output
    assert all((root / n).exists() for n in REPORT)


def test_environment_and_report_say_whether_the_checkout_had_uncommitted_changes(pipe):
    root = _root(pipe)
    assert runner.invoke(app, ["run", str(pipe)]).exit_code == 0
    env = json.loads((root / "results.json").read_text())["environment"]
    assert env["git_dirty"] is _git_dirty()
    want = {True: "yes (the commit alone", False: "no", None: "unknown"}[env["git_dirty"]]
    assert f"<th>uncommitted changes</th><td>{want}" in (root / "report.html").read_text()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_dirty_follows_the_working_tree(tmp_path):
    assert _git_dirty(tmp_path) is None  # not a checkout

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-q", "-m", "a")
    assert _git_dirty(tmp_path) is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert _git_dirty(tmp_path) is True


def test_a_run_directory_holding_the_users_own_files_is_refused(pipe, tmp_path):
    mine = tmp_path / "project"
    (mine / "lr_find").mkdir(parents=True)  # a folder named like a stage, which the stage clears
    (mine / "lr_find" / "notes.txt").write_text("mine")
    (mine / "pipeline.yaml").write_text("# mine\n")
    res = runner.invoke(app, ["run", str(pipe), "--run-dir", str(mine)])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert f"run directory {mine} holds files no dlopt run wrote (lr_find, pipeline.yaml)" in res.output
    assert (mine / "lr_find" / "notes.txt").read_text() == "mine"
    assert (mine / "pipeline.yaml").read_text() == "# mine\n"
    assert sorted(p.name for p in mine.iterdir()) == ["lr_find", "pipeline.yaml"]
