"""Fixes found in review: best config after an edited resume, constraint metrics nobody
reports, unusable SQLite files, bad study names, the worker's SIGTERM hint, one storage per
study folder, a config without search:, worker processes' start notes, Ctrl-C inside a
journal write, a val_ metric no training run reports."""

from __future__ import annotations

import json
import logging

import optuna
import pytest
import yaml
from test_cli_tune import _write_config, runner
from tune_helpers import digits_objective, errors_in_threads, tune_config

from dlopt.cli import app
from dlopt.errors import ConfigError
from dlopt.tune import tune
from dlopt.tune._study import _worker_main


def _states(study_dir, name="digits"):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(study_dir / "study.log")))
    study = optuna.load_study(study_name=name, storage=storage)
    return [t.state.name for t in study.trials]


def test_best_config_is_the_best_trials_own_after_resuming_with_an_edited_config(tmp_path):
    sdir = tmp_path / "study"
    first = _write_config(tmp_path / "a.yaml", epochs=2)
    res = runner.invoke(app, ["tune", str(first), "--study-dir", str(sdir), "--trials", "2"])
    assert res.exit_code == 0, res.output
    # the same study resumed with fewer epochs: nothing new runs, the tables are rewritten
    edited = _write_config(tmp_path / "b.yaml", epochs=1)
    res = runner.invoke(app, ["tune", str(edited), "--study-dir", str(sdir), "--trials", "2"])
    assert res.exit_code == 0, res.output
    best = json.loads((sdir / "best_params.json").read_text())
    best_cfg = yaml.safe_load((sdir / "best_config.yaml").read_text())
    trial_cfg = yaml.safe_load((sdir / "trials" / f"{best['trial']:04d}" / "config.yaml").read_text())
    assert best_cfg["train"]["epochs"] == trial_cfg["train"]["epochs"] == 2
    assert best_cfg["name"] == "cli-best" and best_cfg["train"]["progress"] is False
    assert best_cfg["train"]["optim"]["lr"] == pytest.approx(best["params"]["train.optim.lr"])


def test_a_constraint_metric_no_trial_reports_ends_the_study_after_one_trial(tmp_path):
    # a typo of val_accuracy: counted as met on every trial before
    cfg = tune_config(constraints=[{"metric": "val_acuracy", "min": 0.5}])
    with pytest.raises(ConfigError) as err:
        tune(cfg, study_dir=tmp_path, trials=5, objective=digits_objective, plots=False)
    assert str(err.value) == ("search.constraints: the trial reported no val_acuracy; it reports: "
                              "epochs, params, val_accuracy")
    assert _states(tmp_path) == ["FAIL", "WAITING"]
    # a metric from check_static (before training) is a report too
    cfg = tune_config(constraints=[{"metric": "params", "max": 1e6}])
    res = tune(cfg, study_dir=tmp_path / "static", trials=1, objective=digits_objective,
               plots=False)
    assert [r.state for r in res.ran] == ["COMPLETE"]


@pytest.mark.parametrize("kind", ["not a database", "a directory"])
def test_an_sqlite_url_on_a_file_that_is_no_database_is_one_line_exit_2(tmp_path, kind):
    place = tmp_path / "place"
    if kind == "a directory":
        place.mkdir()
    else:
        place.write_text("hello\n")
    config = _write_config(tmp_path / "t.yaml")
    res = runner.invoke(app, ["tune", str(config), "--trials", "1", "--study-dir",
                              str(tmp_path / "s"), "--storage", f"sqlite:///{place}"])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith(f"error: --storage 'sqlite:///{place}': cannot open it: (sqlite3.")


@pytest.mark.parametrize("args", [["--study", "../../escape"], ["--study", "bad/name"],
                                  ["--set", "search.study=bad/name"]])
def test_a_study_name_that_is_no_directory_name_is_refused_before_anything(tmp_path,
                                                                            monkeypatch, args):
    config = _write_config(tmp_path / "t.yaml")
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # the default study folder is runs/<study> under the cwd
    res = runner.invoke(app, ["tune", str(config), "--trials", "3", *args])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    key = "--study" if args[0] == "--study" else "search.study"
    assert res.output.startswith(f"error: {key} '") and "one directory name" in res.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["here", "t.yaml", "work"]


def _terminated_objective(cfg, ctx):
    """Stands in for a training run stopped by SIGTERM (its real message and exception)."""
    from dlopt.train import Terminated
    from dlopt.train.callbacks.signals import RESUME_HINT as TRAIN_HINT

    raise Terminated(f"stopped by SIGTERM at step 3; checkpoint saved; {TRAIN_HINT}")


def test_a_worker_process_stopped_by_sigterm_gives_tunes_hint(tmp_path, caplog):
    from dlopt.tune import RESUME_HINT

    cfg = tune_config()
    # what the parent passes a worker (tune._tune): every option but workers and notes
    kwargs = dict(study=None, study_dir=str(tmp_path), storage=None, trials=1, timeout=None,
                  plots=False, objective=_terminated_objective, on_trial=None)
    with caplog.at_level(logging.ERROR, logger="dlopt.tune._study"), \
            pytest.raises(SystemExit) as stop:
        _worker_main(cfg.model_dump(mode="json"), kwargs, (optuna.logging.WARNING, False))
    assert stop.value.code == 143
    [line] = [r.getMessage() for r in caplog.records if r.name == "dlopt.tune._study"]
    assert line.endswith(RESUME_HINT) and "--resume" not in line


def test_another_storage_on_a_study_folder_is_refused(tmp_path):
    cfg = tune_config()
    tune(cfg, study_dir=tmp_path, trials=1, objective=digits_objective, plots=False)
    before = (tmp_path / "trials.csv").read_text()
    with pytest.raises(ConfigError) as err:
        tune(cfg, study_dir=tmp_path, storage="memory", trials=1, objective=digits_objective,
             plots=False)
    assert "use another --study name" in str(err.value) and "memory" in str(err.value)
    assert (tmp_path / "trials.csv").read_text() == before
    # the same journal named from elsewhere is the same storage
    tune(cfg, study_dir=tmp_path, storage=f"journal:{tmp_path}/../{tmp_path.name}/study.log",
         trials=2, objective=digits_objective, plots=False)
    assert _states(tmp_path) == ["COMPLETE", "COMPLETE"]
    # memory studies may share a folder: each is gone when its process ends
    for name in ("one", "two"):
        res = tune(cfg, study=name, study_dir=tmp_path / "mem", storage="memory", trials=1,
                   objective=digits_objective, plots=False)
        assert [r.state for r in res.ran] == ["COMPLETE"]


def test_another_study_in_the_same_study_folder_is_refused(tmp_path):
    # both in the folder's journal: the second study's trial 0 overwrote trials/0000 and the
    # tables of the first
    cfg = tune_config()
    tune(cfg, study_dir=tmp_path, trials=1, objective=digits_objective, plots=False)
    before = (tmp_path / "trials" / "0000" / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError) as err:
        tune(cfg, study="other", study_dir=tmp_path, trials=1, objective=digits_objective,
             plots=False)
    assert str(err.value) == (f"{tmp_path} holds study 'digits', not 'other'; use another "
                              f"--study-dir (or --study digits)")
    assert (tmp_path / "trials" / "0000" / "model.safetensors").read_bytes() == before
    assert json.loads((tmp_path / "best_params.json").read_text())["study"] == "digits"
    res = runner.invoke(app, ["tune", str(_write_config(tmp_path / "t.yaml")), "--study-dir",
                              str(tmp_path), "--trials", "1"])  # the study named by the config
    assert res.exit_code == 2 and res.output == (f"error: {tmp_path} holds study 'digits', not "
                                                 f"'cli'; use another --study-dir (or --study "
                                                 f"digits)\n"), res.output


def test_workers_claiming_a_study_folder_at_once_all_succeed(tmp_path):
    """Threads of one process (and processes) claim a new folder together: each writes its own
    temp file, so none finds another's renamed away (a CI run hit FileNotFoundError)."""
    from dlopt.tune._storage import claim_folder, open_storage

    for k in range(10):
        folder = tmp_path / f"s{k}"
        folder.mkdir()
        store = open_storage(None, study_dir=folder, study_name="s", interval=1.0, grace=4.0, workers=1)
        errors = errors_in_threads(lambda: claim_folder(folder, store, "s"), 8)
        store.close()
        assert not errors and (folder / "storage.txt").read_text().startswith("journal:")


@pytest.mark.parametrize("spec, expected", [
    ({"type": "int", "low": 16, "high": 128, "step": 16, "grid": 3}, [16, 80, 128]),
    ({"type": "int", "low": 16, "high": 120, "step": 16, "grid": 3}, [16, 64, 112]),
    ({"type": "float", "low": 0.01, "high": 0.1, "step": 0.03, "grid": 3}, [0.01, 0.07, 0.1]),
])
def test_a_grid_count_on_a_stepped_axis_stays_on_the_step(spec, expected):
    from dlopt.config import SearchParam
    from dlopt.tune._space import Axis

    assert Axis("train.batch_size", SearchParam(**spec)).grid_values() == pytest.approx(expected)


def test_a_grid_list_off_the_step_is_one_line():
    from dlopt.config import SearchParam
    from dlopt.tune._space import Axis

    axis = Axis("train.batch_size", SearchParam(type="int", low=16, high=128, step=16, grid=[16, 72]))
    with pytest.raises(ConfigError, match=r"grid value 72 is not low \+ k \* step"):
        axis.grid_values()


@pytest.mark.parametrize("change, words", [
    ({"log": False}, "log=False"),
    ({"type": "categorical", "choices": [0.01, 0.1], "log": False}, "CategoricalDistribution"),
])
def test_a_resumed_study_whose_axis_changed_kind_is_one_line_before_any_trial(tmp_path, change, words):
    lr = {"type": "float", "low": 1e-4, "high": 1.0, "log": True}
    space = {"train.optim.lr": lr}
    tune(tune_config(space), study_dir=tmp_path, trials=2, objective=digits_objective, plots=False)
    changed = {k: v for k, v in {**lr, **change}.items() if not (k in ("low", "high") and "choices" in change)}
    with pytest.raises(ConfigError, match=rf"search.space.train.optim.lr: study 'digits' drew it as .*asks .*{words}") as err:
        tune(tune_config({"train.optim.lr": changed}), study_dir=tmp_path, trials=4,
             objective=digits_objective, plots=False)
    assert "\n" not in str(err.value)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    trials = optuna.load_study(study_name="digits", storage=JournalStorage(
        JournalFileBackend(str(tmp_path / "study.log")))).trials
    assert len(trials) == 2  # no trial was started, none failed
    # the same axis (bounds changed only) resumes as before
    tune(tune_config({"train.optim.lr": {**lr, "high": 0.5}}), study_dir=tmp_path, trials=3,
         objective=digits_objective, plots=False)


@pytest.mark.parametrize("search", [None, "null"])
def test_a_config_without_a_search_section_says_what_one_looks_like(tmp_path, search):
    path = tmp_path / "plain.yaml"
    cfg = {"name": "plain", "model": {"name": "mlp"}}
    path.write_text(yaml.safe_dump(cfg) + (f"search: {search}\n" if search else ""))
    res = runner.invoke(app, ["tune", str(path), "--study-dir", str(tmp_path / "s")])
    assert res.exit_code == 2, res.output
    [line] = res.output.strip().splitlines()
    assert "has no search: section" in line and "examples/tune-mnist.yaml" in line
    assert "Field required" not in line and not (tmp_path / "s").exists()


@pytest.mark.parametrize("search, words", [
    ({"objectives": [{"metric": "val_acc"}]}, "search.objectives[0].metric='val_acc'"),
    ({"constraints": [{"metric": "val_r2", "min": 0.5}]}, "search.constraints[0].metric='val_r2'"),
])
def test_a_val_metric_no_training_run_reports_is_refused_before_the_first_trial(tmp_path, search,
                                                                             words):
    # a typo, or the other task's metric on a built-in set: a trial used to train first
    config = _write_config(tmp_path / "t.yaml", **search)
    res = runner.invoke(app, ["tune", str(config), "--study-dir", str(tmp_path / "s")])
    assert res.exit_code == 2, res.output
    [line] = res.output.strip().splitlines()
    assert line.startswith(f"error: {words}: a classification run (data mnist) reports no such "
                           "validation metric; allowed: val_loss, val_accuracy,")
    assert "val_r2" not in line.split("allowed: ")[1] and not (tmp_path / "s").exists()


@pytest.mark.parametrize("search, words", [
    ({"objectives": [{"metric": "val_loss"}]}, "search.objectives[0].metric='val_loss'"),
    ({"objectives": [{"metric": "params"}], "constraints": [{"metric": "val_accuracy", "min": 0.5}]},
     "search.constraints[0].metric='val_accuracy'"),
])
def test_a_val_metric_without_a_validation_split_is_refused_before_the_first_trial(tmp_path, search,
                                                                                  words):
    # data.val_fraction: 0 leaves no split to report val_ metrics on: a trial used to train first
    config = _write_config(tmp_path / "t.yaml", **search)
    res = runner.invoke(app, ["tune", str(config), "--study-dir", str(tmp_path / "s"),
                              "--set", "data.val_fraction=0"])
    assert res.exit_code == 2, res.output
    [line] = res.output.strip().splitlines()
    assert line == (f"error: {words}: the runs have no validation split (data.val_fraction: 0), "
                    "so they report no val_ metric; set data.val_fraction > 0 (e.g. 0.1) or "
                    "train.cv (folds)")
    assert not (tmp_path / "s").exists()


def test_cross_validation_folds_are_a_validation_split_for_val_metrics(tmp_path):
    from dlopt.config import TuneConfig, parse_config
    from dlopt.tune import check_training_metrics

    doc = yaml.safe_load(_write_config(tmp_path / "t.yaml").read_text())
    doc["data"]["val_fraction"] = 0
    doc["train"]["cv"] = 2  # each fold validates on its own rows
    check_training_metrics(parse_config(doc, TuneConfig))


def test_worker_processes_leave_the_start_of_study_notes_to_their_parent(tmp_path, capfd, caplog):
    from tune_helpers import shared_objective

    space = {"train.optim.lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
             "train.optim.name": ["adam", "sgd"]}
    cfg = tune_config(space, heartbeat=1.0, grace=8.0, sampler={
        "name": "cmaes", "seed": 0, "options": {"n_startup_trials": 1, "sigma0": 0.5}})
    with caplog.at_level(logging.WARNING):
        tune(cfg, study_dir=tmp_path, trials=3, workers=2, objective=shared_objective, plots=False)
    # the spawned process writes to the inherited stderr; this process logs through caplog
    child = capfd.readouterr().err
    assert "cmaes models" not in child and "sigma0" not in child, child
    said = [r.getMessage() for r in caplog.records]
    assert sum("cmaes models" in m for m in said) == 1
    assert sum("`sigma0` has been deprecated" in m for m in said) == 1


def test_ctrl_c_during_journal_writes_is_a_keyboard_interrupt_and_leaves_no_lock_file(tmp_path):
    # optuna's journal lock, interrupted inside its acquire/release (about 1 Ctrl-C in 50
    # here), raised FileNotFoundError instead and left PATH.lock for the next run to wait on
    import os
    import signal
    import threading
    import time

    from dlopt.tune._storage import open_storage

    # a runner that starts the tests in the background (`cmd &`) starts them with SIGINT
    # ignored: every write loop below would then run to its end instead of being interrupted
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    store = open_storage(None, study_dir=tmp_path, study_name="x", interval=30.0, grace=120.0,
                         workers=1)
    trial = optuna.create_study(storage=store.storage, study_name="x").ask()
    lock = tmp_path / "study.log.lock"
    outcomes = []
    for i in range(300):
        ctrl_c = threading.Timer(0.002 + (i % 7) * 0.0007, os.kill, (os.getpid(), signal.SIGINT))
        try:
            # inside the try: on a loaded machine the signal can come while start() still
            # waits for the timer thread, and would end the whole pytest session
            ctrl_c.start()
            for k in range(100_000):  # far longer than the timer: interrupted inside
                trial.set_user_attr("k", k)
        except BaseException as exc:  # noqa: BLE001 - which exception is the point
            outcomes.append(type(exc).__name__)
        ctrl_c.join()
        if os.path.lexists(lock):
            outcomes.append("lock file left")
            lock.unlink()
    after = signal.signal(signal.SIGINT, inherited)
    store.close()
    assert outcomes == ["KeyboardInterrupt"] * 300, sorted(set(outcomes))
    assert after is signal.default_int_handler
