"""The study machinery with a cheap real objective (SGD on digits): counts, resume,
samplers, pruners, retries, heartbeat, multi-objective, storages, outputs."""

from __future__ import annotations

import csv
import json
import threading
import time

import optuna
import pytest
import yaml
from tune_helpers import digits_objective, errors_in_threads, shared_objective, tune_config

from dlopt.errors import ConfigError, RunError
from dlopt.tune import tune

DONE = ("COMPLETE", "PRUNED")


def _states(study_dir, name="digits"):
    study = optuna.load_study(study_name=name, storage=_journal(study_dir))
    return study, [t.state.name for t in study.trials]


def _journal(study_dir):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(study_dir / "study.log")))


def test_runs_exactly_n_and_writes_outputs(tmp_path):
    res = tune(tune_config(), study_dir=tmp_path, trials=6, objective=digits_objective)
    study, states = _states(tmp_path)  # plain optuna reads the default journal storage
    assert sum(s in DONE for s in states) == 6 and len(states) == 6
    assert res.counts.get("COMPLETE", 0) + res.counts.get("PRUNED", 0) == 6
    best = json.loads((tmp_path / "best_params.json").read_text())
    assert best["trial"] == study.best_trial.number
    assert best["values"]["val_accuracy"] == pytest.approx(study.best_value)
    cfg = yaml.safe_load((tmp_path / "best_config.yaml").read_text())
    assert "search" not in cfg
    assert cfg["train"]["optim"]["lr"] == pytest.approx(best["params"]["train.optim.lr"])
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == list(range(6))
    assert {"val_accuracy", "train.optim.lr", "epochs", "state"} <= set(rows[0])
    assert "feasible" not in rows[0]  # only a study with constraints has the column
    for plot in ("optimization_history", "param_importances", "parallel_coordinate"):
        assert (tmp_path / "plots" / f"{plot}.png").stat().st_size > 1000


def test_rerun_continues_the_study(tmp_path):
    cfg = tune_config()
    tune(cfg, study_dir=tmp_path, trials=3, objective=digits_objective, plots=False)
    res = tune(cfg, study_dir=tmp_path, trials=5, objective=digits_objective, plots=False)
    assert [r.number for r in res.ran] == [3, 4]
    again = tune(cfg, study_dir=tmp_path, trials=5, objective=digits_objective, plots=False)
    assert again.ran == []  # target met: nothing to do
    # a resumed worker draws new parameters (its sampler seed is offset per worker start)
    study, _ = _states(tmp_path)
    lrs = [t.params["train.optim.lr"] for t in study.trials]
    assert len(set(lrs)) == len(lrs) == 5


@pytest.mark.parametrize("sampler", ["grid", "random", "tpe", "cmaes", "qmc"])
def test_samplers(tmp_path, sampler):
    space = {
        "train.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True, "grid": 3},
        "train.optim.weight_decay": {"type": "float", "low": 0.0, "high": 0.01, "step": 0.005},
    }
    cfg = tune_config(space, sampler={"name": sampler, "seed": 1}, pruner="none")
    res = tune(cfg, study_dir=tmp_path, storage="memory", trials=12, objective=digits_objective,
               plots=False)
    params = [tuple(r.params.values()) for r in res.ran]
    if sampler == "grid":
        assert len(res.ran) == 9 and len(set(params)) == 9  # capped at the grid size
        assert {p[0] for p in params} == {1e-3, 0.01, 0.1}
    else:
        assert len(res.ran) == 12
    assert all(r.state == "COMPLETE" for r in res.ran)


def test_a_resumed_grid_study_visits_every_point_once(tmp_path):
    space = {
        "train.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True, "grid": 3},
        "train.optim.weight_decay": [0.0, 0.01],
    }
    cfg = tune_config(space, sampler={"name": "grid", "seed": 1}, pruner="none")
    first = tune(cfg, study_dir=tmp_path, trials=3, objective=digits_objective, plots=False)
    rest = tune(cfg, study_dir=tmp_path, trials=6, objective=digits_objective, plots=False)
    points = [tuple(r.params.values()) for r in first.ran + rest.ran]
    # the second start shuffles the grid as the first did: its stored grid ids mean the same
    assert len(points) == 6 and len(set(points)) == 6


def _grid_space(when=None, lrs=(1e-3, 1e-2, 1e-1)):
    return {"train.optim.name": ["adam", "momentum"], "train.optim.lr": list(lrs),
            "train.optim.momentum": {"type": "float", "low": 0.5, "high": 0.9,
                                     "grid": [0.5, 0.9], "when": when or {"train.optim.name": "momentum"}}}


@pytest.mark.parametrize("change", ["values", "seed", "conditions"])
def test_a_grid_study_resumed_with_another_grid_is_refused(tmp_path, change):
    tune(tune_config(_grid_space(), sampler={"name": "grid", "seed": 1}, pruner="none"),
         study_dir=tmp_path, trials=2, objective=digits_objective, plots=False)
    space = {"values": _grid_space(lrs=(1e-3, 3e-3, 1e-2)),  # same size
             "conditions": _grid_space(when={"train.optim.name": "momentum",  # fewer points
                                             "train.optim.lr": [1e-3, 1e-2]})}.get(change, _grid_space())
    # its stored grid ids index the first start's list: another list would repeat and skip points
    cfg = tune_config(space, sampler={"name": "grid", "seed": 2 if change == "seed" else 1},
                      pruner="none")
    with pytest.raises(ConfigError, match="study 'digits' was started with another grid"):
        tune(cfg, study_dir=tmp_path, trials=9, objective=digits_objective, plots=False)
    assert _states(tmp_path)[1] == ["COMPLETE", "COMPLETE"]


def test_a_grid_study_resumed_unchanged_or_before_any_point_ran_is_accepted(tmp_path):
    cfg = tune_config(_grid_space(), sampler={"name": "grid", "seed": None}, pruner="none")
    # seed null and seed 0 shuffle alike; a start that ran no point binds no grid
    tune(cfg, study_dir=tmp_path, trials=2, objective=digits_objective, plots=False)
    cfg.search.sampler.seed = 0
    tune(cfg, study_dir=tmp_path / "other", trials=1, timeout=1e-9, objective=digits_objective)
    res = tune(cfg, study_dir=tmp_path, trials=9, objective=digits_objective, plots=False)
    points = {tuple(sorted(t.params.items())) for t in _states(tmp_path)[0].trials}
    assert len(res.ran) == 7 and len(points) == 9  # 3 adam + 3 x 2 momentum
    other = tune(tune_config(_grid_space(lrs=(0.1, 0.2)), sampler={"name": "grid", "seed": 0}),
                 study_dir=tmp_path / "other", trials=1, objective=digits_objective, plots=False)
    assert len(other.ran) == 1


def test_a_grid_with_a_conditional_axis_visits_each_distinct_trial_once(tmp_path):
    space = {
        "train.optim.name": ["adam", "momentum"],
        "train.optim.momentum": {"type": "float", "low": 0.8, "high": 0.9, "grid": [0.8, 0.9],
                                 "when": {"train.optim.name": "momentum"}},
        "train.optim.lr": [1e-3, 1e-2],
    }
    cfg = tune_config(space, sampler={"name": "grid", "seed": 2}, pruner="none")
    first = tune(cfg, study_dir=tmp_path, trials=4, objective=digits_objective, plots=False)
    rest = tune(cfg, study_dir=tmp_path, trials=100, objective=digits_objective, plots=False)
    points = [tuple(sorted(r.params.items())) for r in first.ran + rest.ran]
    # 2 adam + 2 x 2 momentum points, not the product's 8 (adam's twice over an unused momentum)
    assert len(points) == 6 and len(set(points)) == 6
    assert sum("train.optim.momentum" not in dict(p) for p in points) == 2
    assert _states(tmp_path)[1] == ["COMPLETE"] * 6


@pytest.mark.parametrize("pruner", ["median", "asha", "hyperband"])
def test_pruners_stop_bad_trials(tmp_path, pruner):
    cfg = tune_config(sampler={"name": "random", "seed": 0},
                      pruner={"name": pruner, "options": {}})
    cfg.train.epochs = 6
    res = tune(cfg, study_dir=tmp_path, storage="memory", trials=14, objective=digits_objective,
               plots=False)
    pruned = [r for r in res.ran if r.state == "PRUNED"]
    assert pruned and all(r.epochs < 6 for r in pruned)
    assert sum(r.state in DONE for r in res.ran) == 14


def test_failed_trial_retried_once_and_not_counted(tmp_path):
    def flaky(cfg, ctx):
        if ctx.number == 1:
            raise RuntimeError("worker lost its GPU")
        return digits_objective(cfg, ctx)

    res = tune(tune_config(), study_dir=tmp_path, storage="memory", trials=4, objective=flaky,
               plots=False)
    by_state = {r.number: r.state for r in res.ran}
    assert by_state[1] == "FAIL"
    retry = next(r for r in res.ran if r.retry_of == 1)
    assert retry.state == "COMPLETE" and retry.params == res.ran[1].params
    assert sum(r.state in DONE for r in res.ran) == 4 and len(res.ran) == 5
    assert "worker lost its GPU" in res.ran[1].note


def test_failing_objective_stops_after_three_in_a_row(tmp_path):
    def broken(cfg, ctx):
        raise ValueError("bad data")

    with pytest.raises(RunError, match="3 trials failed in a row.*bad data"):
        tune(tune_config(), study_dir=tmp_path, storage="memory", trials=5, objective=broken)


def test_stale_trial_of_a_dead_worker_is_failed_and_retried(tmp_path):
    cfg = tune_config()
    tune(cfg, study_dir=tmp_path, trials=2, objective=digits_objective, plots=False)
    # a worker that died mid-trial: RUNNING, parameters drawn, heartbeat long silent
    study = optuna.load_study(study_name="digits", storage=_journal(tmp_path))
    dead = study.ask()
    dead.suggest_float("train.optim.lr", 1e-4, 1.0, log=True)
    dead.suggest_float("train.optim.weight_decay", 1e-6, 1e-1, log=True)
    dead.set_user_attr("heartbeat", time.time() - 60)
    res = tune(cfg, study_dir=tmp_path, trials=4, objective=digits_objective, plots=False)
    study, states = _states(tmp_path)
    assert states[dead.number] == "FAIL"
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == dead.number)
    assert retry.state.name == "COMPLETE" and retry.params == dead.params
    assert sum(s in DONE for s in states) == 4
    assert retry.number in [r.number for r in res.ran]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage:UserWarning")
def test_sqlite_stale_trial_found_by_optuna_heartbeat(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = tune_config()
    tune(cfg, study_dir=tmp_path, storage=url, trials=1, objective=digits_objective, plots=False)
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
    dead = optuna.load_study(study_name="digits", storage=storage).ask()
    dead.suggest_float("train.optim.lr", 1e-4, 1.0, log=True)
    dead.suggest_float("train.optim.weight_decay", 1e-6, 1e-1, log=True)
    storage.record_heartbeat(dead._trial_id)  # then the worker died
    time.sleep(2.5)
    tune(cfg, study_dir=tmp_path, storage=url, trials=3, objective=digits_objective,
         plots=False)
    trials = optuna.load_study(study_name="digits", storage=url).trials
    assert trials[dead.number].state.name == "FAIL"
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == dead.number]
    assert retry.state.name == "COMPLETE" and retry.params == dead.params
    assert sum(t.state.name in DONE for t in trials) == 3


def test_two_workers_share_a_journal_exactly_n(tmp_path):
    cfg = tune_config(sampler={"name": "random", "seed": 0}, heartbeat=1.0, grace=8.0)
    errors = errors_in_threads(
        lambda: tune(cfg, study_dir=tmp_path, trials=16, objective=digits_objective, plots=False), 2)
    assert not errors
    study, states = _states(tmp_path)
    assert sum(s in DONE for s in states) == 16 and len(states) == 16
    assert sorted(t.number for t in study.trials) == list(range(16))


def test_workers_option_spawns_processes(tmp_path):
    # a busy machine can hold a process off the CPU for a second: no false "dead worker"
    cfg = tune_config(sampler={"name": "random", "seed": 0}, heartbeat=1.0, grace=8.0)
    # trial 0 (this process) waits until the spawned process has asked for a trial
    res = tune(cfg, study_dir=tmp_path, trials=8, workers=2, objective=shared_objective,
               plots=False)
    study, states = _states(tmp_path)
    assert sum(s in DONE for s in states) == 8 and len(states) == 8
    assert 0 < len(res.ran) < 8  # the other trials ran in the spawned process
    assert sorted(t.number for t in study.trials) == list(range(8))


def test_sqlite_refuses_a_second_worker(tmp_path):
    cfg = tune_config()
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with pytest.raises(ConfigError, match="SQLite takes one worker"):
        tune(cfg, study_dir=tmp_path, storage=url, trials=2, workers=2,
             objective=digits_objective)
    gate, release = threading.Event(), threading.Event()

    def slow(cfg_, ctx):
        gate.set()
        release.wait(120)
        return digits_objective(cfg_, ctx)

    first = threading.Thread(target=tune, args=(cfg,), kwargs=dict(
        study_dir=tmp_path, storage=url, trials=1, objective=slow, plots=False))
    first.start()
    try:
        assert gate.wait(120)  # a loaded machine takes its time to start the first trial
        with pytest.raises(ConfigError, match="another dlopt tune uses it"):
            tune(cfg, study_dir=tmp_path, storage=url, trials=1, objective=digits_objective)
    finally:
        release.set()
        first.join()
    study = optuna.load_study(study_name="digits", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"]


@pytest.mark.parametrize("url, message", [
    ("redis://x", "unknown storage; allowed: memory, journal:PATH"),
    ("study.db", "unknown storage; allowed: memory, journal:PATH"),
    ("mysql+pymysql://me:secret@127.0.0.1:1/db",
     "--storage mysql+pymysql://me:***@127.0.0.1:1/db: cannot connect: No module named"),
])
def test_bad_storage_url_is_one_line(tmp_path, url, message):
    with pytest.raises(ConfigError) as err:
        tune(tune_config(), study_dir=tmp_path, storage=url, objective=digits_objective)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert "secret" not in str(err.value)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage:UserWarning")
def test_bare_journal_path_and_any_sqlalchemy_url(tmp_path):
    from dlopt.tune._storage import STORAGES

    tune(tune_config(), study_dir=tmp_path, storage=str(tmp_path / "j.log"), trials=1,
         objective=digits_objective, plots=False)
    assert len(optuna.load_study(study_name="digits", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))).trials) == 1
    # the generic SQLAlchemy path (row locks in a dlopt_locks table), here on an SQLite file
    url = f"sqlite:///{tmp_path / 'g.db'}"
    store = STORAGES.create("rdb", target=url, study_name="s", interval=1.0, grace=2.0,
                            workers=2)
    try:
        with store.lock():
            study = optuna.create_study(storage=store.storage, study_name="s")
        trial = study.ask()
        store.heartbeat.beat(trial._trial_id)
        assert store.heartbeat.fail_stale(study) == []  # it just beat
    finally:
        store.close()
    import sqlalchemy

    with sqlalchemy.create_engine(url).connect() as conn:
        rows = set(conn.scalars(sqlalchemy.text("SELECT name FROM dlopt_locks")))
    assert rows == {"dlopt:schema", "dlopt:study:s"}


def test_keeps_weights_of_best_k_only(tmp_path):
    cfg = tune_config(pruner="none", keep_checkpoints=2)
    tune(cfg, study_dir=tmp_path, storage="memory", trials=5, objective=digits_objective,
         plots=False)
    with_weights = sorted(p.parent.name for p in tmp_path.glob("trials/*/model.safetensors"))
    assert len(with_weights) == 2
    assert len(list(tmp_path.glob("trials/*/summary.json"))) == 5
    best = json.loads((tmp_path / "best_params.json").read_text())["trial"]
    assert f"{best:04d}" in with_weights


def test_multi_objective_front_and_constraint(tmp_path):
    space = {
        "train.optim.lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
        "model.width": {"type": "float", "low": 0.25, "high": 2.0},
    }
    cfg = tune_config(space, objectives=[{"metric": "val_accuracy"}, {"metric": "params"}],
                      constraints=[{"metric": "params", "max": 150000}],
                      sampler={"name": "random", "seed": 3})
    res = tune(cfg, study_dir=tmp_path, storage="memory", trials=10,
               objective=digits_objective)
    over = [r for r in res.ran if r.params["model.width"] ** 2 * 61706 > 150000]
    assert over and all(r.state == "PRUNED" and r.epochs == 0 for r in over)
    assert all("before training" in r.note for r in over)
    best = json.loads((tmp_path / "best_params.json").read_text())
    front = best["pareto"]
    assert front and all(row["feasible"] and row["values"]["params"] <= 150000 for row in front)
    # nobody on the front is dominated by another complete trial
    done = [r for r in res.ran if r.state == "COMPLETE"]
    for row in front:
        acc, params = row["values"]["val_accuracy"], row["values"]["params"]
        assert not any(r.values["val_accuracy"] > acc and r.values["params"] < params
                       for r in done)
    assert (tmp_path / "plots" / "pareto_front.png").exists()


def test_multi_objective_pareto_rule_prunes_dominated(tmp_path):
    space = {"train.optim.lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": True}}
    cfg = tune_config(space, objectives=[{"metric": "val_accuracy"}, {"metric": "params"}],
                      sampler={"name": "random", "seed": 0},
                      pruner={"name": "pareto",
                              "options": {"n_startup_trials": 3, "n_warmup_steps": 1}})
    cfg.train.epochs = 5
    res = tune(cfg, study_dir=tmp_path, storage="memory", trials=12,
               objective=digits_objective, plots=False)
    pruned = [r for r in res.ran if r.state == "PRUNED"]
    # same params everywhere: a trial behind the median is dominated by a better one
    assert pruned and all("dominated by trial" in r.note and 1 < r.epochs < 5 for r in pruned)


def test_trials_csv_gives_a_pruned_multi_objective_trial_its_measured_values(tmp_path):
    import csv

    space = {"train.optim.lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": True},
             "model.width": {"type": "categorical", "choices": [1.0, 2.0]}}
    cfg = tune_config(space, objectives=[{"metric": "val_accuracy"}, {"metric": "params"}],
                      constraints=[{"metric": "params", "max": 150000}],
                      sampler={"name": "random", "seed": 0},
                      pruner={"name": "pareto",
                              "options": {"n_startup_trials": 2, "n_warmup_steps": 1}})
    cfg.train.epochs = 4
    tune(cfg, study_dir=tmp_path, trials=14, objective=digits_objective, plots=False)
    rows = {int(r["number"]): r for r in csv.DictReader((tmp_path / "trials.csv").open())}
    study, _ = _states(tmp_path)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    trained = [t for t in pruned if t.user_attrs["epochs"] > 0]
    assert trained and len(trained) < len(pruned)  # stopped while training, and before it
    for t in pruned:
        row = rows[t.number]
        # optuna keeps no values for these: the csv has what was measured before the stop
        assert float(row["params"]) == round(61706 * t.params["model.width"] ** 2)
        curve = t.user_attrs.get("curve")
        last = curve[str(t.user_attrs["epochs"])] if curve else None  # what the pruner saw
        assert (float(row["val_accuracy"]) if row["val_accuracy"] else None) == last


def test_a_study_with_the_largest_sampler_seed_resumes(tmp_path):
    # each start offsets the seed by one: 2**32 - 1 + 1 was refused by numpy on the resume
    cfg = tune_config(sampler={"name": "random", "seed": 2**32 - 1})
    tune(cfg, study_dir=tmp_path, trials=1, objective=digits_objective, plots=False)
    res = tune(cfg, study_dir=tmp_path, trials=2, objective=digits_objective, plots=False)
    assert [r.state for r in res.ran] == ["COMPLETE"]


def test_existing_study_with_other_objectives_refused(tmp_path):
    tune(tune_config(), study_dir=tmp_path, trials=1, objective=digits_objective, plots=False)
    cfg = tune_config(objectives=[{"metric": "val_loss"}])
    with pytest.raises(ConfigError, match="optimizes \\['val_accuracy'\\]"):
        tune(cfg, study_dir=tmp_path, trials=2, objective=digits_objective)


def _wsgi_get(app, path):
    from wsgiref.util import setup_testing_defaults

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    return status[0], json.loads(body)


def test_optuna_dashboard_reads_the_journal(tmp_path):
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    tune(tune_config(), study_dir=tmp_path, trials=3, objective=digits_objective, plots=False)
    app = optuna_dashboard.wsgi(str(tmp_path / "study.log"))  # what `optuna-dashboard FILE` opens
    status, doc = _wsgi_get(app, "/api/studies")
    assert status.startswith("200")
    (summary,) = doc["study_summaries"]
    assert summary["study_name"] == "digits"
    status, detail = _wsgi_get(app, f"/api/studies/{summary['study_id']}")
    assert status.startswith("200")
    assert [t["state"] for t in detail["trials"]] == ["Complete"] * 3
    assert {p["name"] for p in detail["trials"][0]["params"]} == {
        "train.optim.lr", "train.optim.weight_decay"}


def test_sigterm_between_trials_stops_the_worker_cleanly(tmp_path):
    import os
    import signal

    from dlopt.train import Terminated

    def sigterm_in_trial_1(cfg, ctx):
        if ctx.number == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # outside a training loop: the worker's flag
        return digits_objective(cfg, ctx)

    with pytest.raises(Terminated, match="between trials; rerun"):
        tune(tune_config(), study_dir=tmp_path, trials=5, objective=sigterm_in_trial_1)
    _, states = _states(tmp_path)
    assert states == ["COMPLETE", "COMPLETE"]  # trial 1 finished, no trial 2 was started
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_no_best_config_from_an_infeasible_trial_and_none_left_from_another_study(tmp_path):
    feasible = tune(tune_config(), study_dir=tmp_path, storage="memory", trials=2,
                    objective=digits_objective, plots=False)
    assert feasible.best is not None and (tmp_path / "best_config.yaml").is_file()
    # a second in-memory study in the same folder, none of whose trials can meet the constraint
    cfg = tune_config(constraints=[{"metric": "val_accuracy", "min": 2.0}])
    res = tune(cfg, study_dir=tmp_path, storage="memory", trials=2, objective=digits_objective,
               plots=False)
    assert res.best is not None and res.best["feasible"] is False
    assert res.best["trial"] in {r.number for r in res.ran}  # this study's trial, not the last's
    assert not (tmp_path / "best_config.yaml").exists()
    assert {p.name for p in res.outputs} == {"trials.csv", "best_params.json"}


def test_constraints_are_optunas_own_record_for_tpe_and_best_trial(tmp_path, recwarn):
    # optuna's TPE, best_trial, Pareto plot and dashboard read trial.constraints (set with
    # Trial.set_constraint), not the deprecated constraints_func; an upper bound on accuracy
    # makes the most accurate trial infeasible, so best_trial must skip it
    cfg = tune_config(constraints=[{"metric": "val_accuracy", "max": 0.89}],
                      sampler={"name": "tpe", "seed": 1, "options": {"n_startup_trials": 3}})
    res = tune(cfg, study_dir=tmp_path, trials=6, objective=digits_objective, plots=False)
    study, states = _states(tmp_path)
    for t in study.trials:
        acc = t.user_attrs["metrics"]["val_accuracy"]
        assert t.constraints == {"val_accuracy <= 0.89": pytest.approx(acc - 0.89)}
        assert t.user_attrs["constraints"] == [pytest.approx(acc - 0.89)]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    feasible = [t for t in done if t.value <= 0.89]
    assert feasible and len(feasible) < len(done)  # both kinds, or the test shows nothing
    assert study.best_trial.number == max(feasible, key=lambda t: t.value).number
    assert res.best["trial"] == study.best_trial.number and res.best["feasible"] is True
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert [r["feasible"] for r in rows] == [str(t.value <= 0.89) for t in study.trials]
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]


def test_an_objective_metric_no_trial_reports_ends_the_study_after_one_trial(tmp_path):
    # not a flaky failure worth retrying 3 times: every trial would miss it (exit 2, one line)
    cfg = tune_config(objectives=[{"metric": "val_widgets", "direction": "maximize"}])
    with pytest.raises(ConfigError) as err:
        tune(cfg, study_dir=tmp_path, trials=5, objective=digits_objective, plots=False)
    assert str(err.value) == ("search.objectives: the trial reported no val_widgets; it reports: "
                              "epochs, params, val_accuracy")
    study, states = _states(tmp_path)
    assert states == ["FAIL", "WAITING"]  # the trial is recorded, its retry queued
    assert study.trials[0].user_attrs["error"] == str(err.value)
    # no result yet: the fixed name takes the study over (its retry runs first)
    res = tune(tune_config(), study_dir=tmp_path, trials=2, objective=digits_objective,
               plots=False)
    assert [(r.number, r.retry_of, r.state) for r in res.ran] == [(1, 0, "COMPLETE"),
                                                                  (2, None, "COMPLETE")]
    with pytest.raises(ConfigError, match="optimizes \\['val_accuracy'\\]; this config asks"):
        tune(cfg, study_dir=tmp_path, trials=3, objective=digits_objective, plots=False)
