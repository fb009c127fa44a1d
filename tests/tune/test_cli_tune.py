"""End to end through dlopt's training engine: `dlopt tune` worker processes sharing a
journal, a worker killed mid-trial, resume, memory across trials, `dlopt lr-find`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.config import RunConfig, TuneConfig, load_config, parse_config
from dlopt.tune._storage import _pg_driver_url

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
DONE = ("COMPLETE", "PRUNED")
INTERRUPTED = "error: interrupted; rerun the same command to continue"


def _write_config(path: Path, *, epochs: int = 1, heartbeat: float = 1.0, grace: float = 4.0,
                  **search) -> Path:
    cfg = {
        "name": "cli",
        "data": {"name": "mnist", "subset": 600, "test_subset": 200},
        "model": {"name": "mlp", "width": 32, "depth": 1},
        "train": {"epochs": epochs, "batch_size": 100, "eval_batch_size": 512,
                  "progress": False, "threads": 1},
        "search": {
            "space": {
                "train.optim.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
                "model.width": {"type": "int", "low": 16, "high": 64, "step": 16},
            },
            "sampler": {"name": "random", "seed": 0},
            "pruner": "none", "keep_checkpoints": 1,
            "heartbeat": heartbeat, "grace": grace, **search,
        },
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


# PostgreSQL runs only where a scratch database is given (CI sets it up)
PG_URL = os.environ.get("DLOPT_TEST_POSTGRES_URL")


@pytest.fixture(params=["journal", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="set DLOPT_TEST_POSTGRES_URL to a scratch PostgreSQL database"))])
def storage(request, tmp_path):
    """(storage URL, study name) shared by the worker processes of one test."""
    if request.param == "journal":
        return f"journal:{tmp_path / 'shared.log'}", "cli"
    return PG_URL, f"cli-{uuid.uuid4().hex[:8]}"


def _worker(config: Path, study_dir: Path, storage: tuple[str, str], *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    url, name = storage
    return subprocess.Popen(
        [sys.executable, "-m", "dlopt", "tune", str(config), "--study", name,
         "--storage", url, "--study-dir", str(study_dir), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _study(storage: tuple[str, str]) -> optuna.Study:
    url, name = storage
    if url.startswith("journal:"):
        return optuna.load_study(study_name=name, storage=JournalStorage(
            JournalFileBackend(url[len("journal:"):])))
    return optuna.load_study(study_name=name, storage=_pg_driver_url(url))


def test_two_worker_processes_end_with_exactly_n(tmp_path, storage):
    config = _write_config(tmp_path / "t.yaml")
    procs = [_worker(config, tmp_path, storage, "--trials", "20") for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trials = _study(storage).trials
    states = [t.state.name for t in trials]
    assert sum(s in DONE for s in states) == 20
    # a worker held off the CPU past the grace period on a loaded machine is taken for dead:
    # its trial is failed and retried once, so a FAIL may appear, never a 21st counted trial
    failed = [t.number for t in trials if t.state.name == "FAIL"]
    assert len(trials) == 20 + len(failed)
    assert sorted(t.user_attrs.get("retry_of") for t in trials
                  if t.user_attrs.get("retry_of") is not None) == failed
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))  # no duplicate numbers
    ran = [len(re.findall(r"^trial +\d+ (?:COMPLETE|PRUNED|FAIL) ", out, re.M)) for out in outs]
    assert sum(ran) == len(trials) and min(ran) >= 1  # both workers took trials
    # outputs are readable: best config runs with `dlopt train`
    best = load_config(tmp_path / "best_config.yaml", schema=RunConfig)
    assert best.name == f"{storage[1]}-best"
    assert len(list(tmp_path.glob("trials/*/model.safetensors"))) <= 1


def test_killed_worker_trial_failed_then_retried(tmp_path, storage):
    config = _write_config(tmp_path / "t.yaml", epochs=3)
    first = _worker(config, tmp_path, storage, "--trials", "2")
    deadline = time.monotonic() + 120
    victim = None
    while time.monotonic() < deadline and victim is None:
        time.sleep(0.1)
        try:
            trials = _study(storage).trials
        except (KeyError, ValueError):  # the study does not exist yet
            continue
        running = [t for t in trials if t.state.name == "RUNNING"
                   and len(t.params) == 2]  # training, not sampling
        victim = running[0].number if running else None
    assert victim is not None, "no trial started"
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    # the next driver finds the silent trial after the grace period, fails it, retries it
    second = _worker(config, tmp_path, storage, "--trials", "2")
    out = second.communicate(timeout=300)[0]
    assert second.returncode == 0, out
    trials = _study(storage).trials
    assert trials[victim].state.name == "FAIL"
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim]
    assert len(retries) == 1 and retries[0].state.name in DONE
    assert retries[0].params == trials[victim].params
    assert retries[0].number > victim  # numbering continued
    assert sum(t.state.name in DONE for t in trials) == 2
    assert f"(retry of {victim})" in out


def test_rerun_continues_study_in_process(tmp_path):
    config = _write_config(tmp_path / "t.yaml")
    sdir = tmp_path / "study"
    res = runner.invoke(app, ["tune", str(config), "--study-dir", str(sdir), "--trials", "1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["tune", str(config), "--study-dir", str(sdir), "--trials", "2"])
    assert res.exit_code == 0, res.output
    assert "trial    1 COMPLETE" in res.output and "trial    0" not in res.output
    assert "study cli: 2 trials" in res.output
    storage = JournalStorage(JournalFileBackend(str(sdir / "study.log")))
    study = optuna.load_study(study_name="cli", storage=storage)
    assert [t.number for t in study.trials] == [0, 1]
    summary = json.loads((sdir / "trials" / "0001" / "summary.json").read_text())
    assert summary["val"]
    for plot in ("optimization_history", "parallel_coordinate"):
        assert (sdir / "plots" / f"{plot}.png").exists()


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_memory_does_not_grow_across_trials(tmp_path):
    from dlopt.tune import tune

    cfg = parse_config(yaml.safe_load(_write_config(tmp_path / "t.yaml").read_text()),
                       TuneConfig)
    cfg.search.space = {"train.optim.lr": cfg.search.space["train.optim.lr"]}
    cfg.model.width, cfg.model.depth = 2048, 2  # 5.8 M params: 23 MB of weights per trial
    cfg.train.optim.name = "sgd"  # no optimizer state: quicker steps and checkpoints
    rss: list[float] = []
    tune(cfg, study_dir=tmp_path / "s", storage="memory", trials=10,
         on_trial=lambda rec: rss.append(_rss_mb()), plots=False)
    assert len(rss) == 10
    # the allocator moves RSS by ~+-45 MB between trials, so compare peaks: measured +22 MB
    # here, while keeping each trial's trained model added +159 MB over the same trials
    assert max(rss[-3:]) - max(rss[1:4]) < 80, rss


def test_lr_find_cli(tmp_path):
    config = _write_config(tmp_path / "t.yaml")
    out = tmp_path / "lr"
    # lr-find ignores the search: section, a broken one included (low > high here)
    res = runner.invoke(app, ["lr-find", str(config), "--run-dir", str(out), "--steps", "40",
                              "--min-lr", "1e-5", "--max-lr", "10",
                              "--set", "search.space.train.optim.lr.low=1"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "lr_find.json").read_text())
    # Adam on a small MLP: the suggestion sits on the falling slope, below the minimum
    assert 1e-4 <= doc["suggestion"] < doc["min_loss_lr"] <= 10
    assert doc["suggestion"] <= 0.1 and len(doc["lrs"]) == len(doc["smoothed"]) <= 40
    assert (out / "lr_find.png").stat().st_size > 1000
    assert f"suggested lr: {doc['suggestion']:.2e}" in res.output


def test_example_config_is_valid():
    cfg = load_config(ROOT / "examples" / "tune-mnist.yaml", schema=TuneConfig)
    assert cfg.search.sampler.name == "tpe" and cfg.search.pruner.name == "asha"


@pytest.mark.parametrize("storage", ["sqlite", "memory"])
def test_several_workers_refused_on_single_process_storages(tmp_path, storage):
    config = _write_config(tmp_path / "t.yaml")
    url = f"sqlite:///{tmp_path / 's.db'}" if storage == "sqlite" else "memory"
    res = runner.invoke(app, ["tune", str(config), "--storage", url, "--workers", "2",
                              "--study-dir", str(tmp_path / "s")])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "journal:PATH" in res.output


@pytest.mark.parametrize(("args", "search", "message"), [
    (["--storage", "journal:{file}/x.log"], {}, "cannot open it: [Errno 17] File exists"),
    (["--storage", "sqlite:///{file}/x.db"], {}, "cannot open it: [Errno 17] File exists"),
    (["--storage", "postgresql://u:p@localhost:notaport/db"], {}, "cannot open it: invalid literal"),
    (["--study-dir", "{file}"], {}, "cannot create it: File exists"),
    (["--timeout", "0"], {}, "--timeout=0.0: need a number of seconds > 0"),
    ([], {"pruner": {"name": "asha", "options": {"reduction_factor": 1}}},
     "search.pruner 'asha': The value of `reduction_factor` is 1"),
    ([], {"sampler": {"name": "qmc", "options": {"qmc_type": "nope"}}},
     "search.sampler 'qmc': The `qmc_type='nope'` is invalid"),
    ([], {"pruner": {"name": "hyperband", "options": {"min_resource": 5, "max_resource": 2}}},
     "search.pruner 'hyperband': min_resource=5 > max_resource=2; need min_resource <= max_resource"),
])
def test_unusable_storage_place_or_option_value_is_one_line_exit_2(tmp_path, args, search, message):
    file = tmp_path / "afile"  # a file where a directory is needed
    file.write_text("")
    config = _write_config(tmp_path / "t.yaml", **search)
    place = [] if "--study-dir" in args else ["--study-dir", str(tmp_path / "s")]
    res = runner.invoke(app, ["tune", str(config), "--trials", "1", *place,
                              *[a.format(file=file) for a in args]])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith("error: ") and message in res.output
    if search:  # refused with the config, before a study is created in the storage
        assert not (tmp_path / "s" / "study.log").exists()


def test_latency_objective_measured_by_deploy(tmp_path):
    from dlopt.tune import tune

    data = yaml.safe_load(_write_config(tmp_path / "t.yaml").read_text())
    data["search"].update(objectives=[{"metric": "val_accuracy"}, {"metric": "latency_ms"}],
                          constraints=[{"metric": "latency_ms", "max": 50.0}], pruner="none")
    del data["search"]["space"]["model.width"]  # one architecture: measured once, then reused
    res = tune(parse_config(data, TuneConfig), study_dir=tmp_path / "s", storage="memory",
               trials=2, plots=False)
    assert [r.state for r in res.ran] == ["COMPLETE", "COMPLETE"]
    assert 0 < res.ran[0].values["latency_ms"] < 50
    assert res.ran[1].values["latency_ms"] == res.ran[0].values["latency_ms"]
    assert res.best is not None and res.best["pareto"]


def test_sigterm_fails_the_trial_queues_its_retry_and_stops(tmp_path):
    from dlopt.train import Terminated
    from dlopt.tune import train_objective, tune

    data = yaml.safe_load(_write_config(tmp_path / "t.yaml", epochs=2).read_text())
    data["search"]["space"] = {"train.optim.lr": data["search"]["space"]["train.optim.lr"]}
    cfg = parse_config(data, TuneConfig)

    def terminated_in_trial_1(run_cfg, ctx):
        report = ctx.report

        def report_then_sigterm(epoch, metrics):
            if ctx.number == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # what `kill PID` does to a worker
            report(epoch, metrics)

        ctx.report = report_then_sigterm
        return train_objective(run_cfg, ctx)

    sdir = tmp_path / "s"
    with pytest.raises(Terminated) as stopped:
        tune(cfg, study_dir=sdir, trials=3, objective=terminated_in_trial_1, plots=False)
    from dlopt.tune import RESUME_HINT
    from dlopt.train.callbacks.signals import with_resume_hint

    line = with_resume_hint(str(stopped.value), RESUME_HINT)  # what `dlopt tune` prints
    assert "stopped by SIGTERM" in line and "--resume" not in line and "retried when the same" in line
    study = optuna.load_study(study_name="cli", storage=JournalStorage(
        JournalFileBackend(str(sdir / "study.log"))))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "WAITING"]
    assert "stopped by SIGTERM" in study.trials[1].user_attrs["error"]
    assert [r["state"] for r in _csv_rows(sdir)] == ["COMPLETE", "FAIL", "WAITING"]  # refreshed
    res = tune(cfg, study_dir=sdir, trials=3, plots=False)  # the rerun takes the retry first
    assert [(r.number, r.retry_of) for r in res.ran] == [(2, 1), (3, None)]
    assert res.ran[0].params == study.trials[1].params


def _csv_rows(study_dir: Path) -> list[dict[str, str]]:
    import csv

    return list(csv.DictReader((study_dir / "trials.csv").open()))


def _ctrl_c(config: Path, sdir: Path, trials: list[int], *extra: str) -> tuple[int, str]:
    """Start `dlopt tune`, wait until each of ``trials`` has trained an epoch, then press
    Ctrl-C: SIGINT to the whole process group, as a terminal sends it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "dlopt", "tune", str(config), "--study-dir",
                             str(sdir), *extra], env=env, text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not all(
            (sdir / "trials" / f"{n:04d}" / "metrics.jsonl").exists() for n in trials):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    return proc.returncode, out


def test_ctrl_c_refreshes_the_tables_with_the_failed_trial_and_its_retry(tmp_path):
    config = _write_config(tmp_path / "t.yaml", epochs=500)  # still training when interrupted
    code, out = _ctrl_c(config, tmp_path / "s", [0], "--trials", "2")
    # the way on, as SIGTERM's line gives it (before: "error: interrupted" alone)
    assert code == 130 and out.strip().splitlines()[-1] == INTERRUPTED, out
    # before, trials.csv waited for the next run: here it did not exist at all
    failed, retry = _csv_rows(tmp_path / "s")
    assert (failed["state"], failed["note"]) == ("FAIL", "interrupted")
    assert (retry["state"], retry["retry_of"]) == ("WAITING", "0")


def test_ctrl_c_with_worker_processes_is_one_line_and_every_trial_is_in_the_tables(tmp_path):
    config = _write_config(tmp_path / "t.yaml", epochs=500)
    code, out = _ctrl_c(config, tmp_path / "s", [0, 1], "--trials", "4", "--workers", "2")
    # the worker process printed a KeyboardInterrupt traceback before
    assert code == 130 and "Traceback" not in out, out
    assert out.strip().splitlines() == [INTERRUPTED], out
    rows = _csv_rows(tmp_path / "s")
    assert sorted(r["state"] for r in rows) == ["FAIL", "FAIL", "WAITING", "WAITING"]
    assert sorted(r["retry_of"] for r in rows if r["state"] == "WAITING") == ["0", "1"]


def test_optunas_warnings_reach_the_terminal_once_each_in_dlopts_format(tmp_path):
    # CMA-ES warns on every trial that it ignores the constraints and draws the categorical
    # axis at random; sigma0 is deprecated (said at validation and again at the study's start)
    space = {"train.optim.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
             "train.optim.name": ["adam", "sgd"]}
    config = _write_config(tmp_path / "t.yaml", space=space, constraints=[
        {"metric": "params", "max": 1e7}], sampler={"name": "cmaes", "seed": 0, "options": {
            "n_startup_trials": 1, "sigma0": 0.5}})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([sys.executable, "-m", "dlopt", "tune", str(config), "--trials", "3",
                          "--study-dir", str(tmp_path / "s")], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert res.returncode == 0, res.stdout
    lines = res.stdout.splitlines()
    raw = [ln for ln in lines if ln.startswith("[W ") or "Warning:" in ln or "optuna_warn(" in ln]
    assert not raw, res.stdout
    notes = [ln for ln in lines if ln.startswith("WARNING ")]
    assert len(notes) == 3, res.stdout
    assert notes[0] == ("WARNING dlopt.tune._study: search.sampler cmaes models the float and int "
                        "axes every trial has; drawn at random instead: train.optim.name")
    assert notes[1].startswith("WARNING dlopt.tune._study: search.constraints: cmaes does not")
    assert notes[2].startswith("WARNING dlopt.tune._warnings: optuna: `sigma0` has been deprecated")


def test_sigterm_after_a_trials_last_step_completes_it_then_stops_the_worker(tmp_path):
    from dlopt.train import Terminated, train_run
    from dlopt.tune import tune

    class SigtermAtFitEnd:  # the signal lands while the final checkpoint is written
        def on_fit_end(self, state):
            os.kill(os.getpid(), signal.SIGTERM)

    def objective(run_cfg, ctx):
        result = train_run(run_cfg, run_dir=ctx.run_dir, overwrite=True,
                           callbacks=[SigtermAtFitEnd()] if ctx.number == 1 else [])
        return {"val_accuracy": result.history[-1]["val_accuracy"]}

    cfg = parse_config(yaml.safe_load(_write_config(tmp_path / "t.yaml").read_text()), TuneConfig)
    sdir = tmp_path / "s"
    with pytest.raises(Terminated, match="between trials"):
        tune(cfg, study_dir=sdir, trials=4, objective=objective, plots=False)
    study = optuna.load_study(study_name="cli", storage=JournalStorage(
        JournalFileBackend(str(sdir / "study.log"))))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]  # no trial 2 started
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
