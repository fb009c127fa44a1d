"""Search spaces: validation (one clear line, exit 2), conditional sampling, grids."""

from __future__ import annotations

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.config import TuneConfig, parse_config
from dlopt.errors import ConfigError
from dlopt.tune import SearchSpace

runner = CliRunner()

LR = {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}


def _cfg(space, **search):
    return parse_config({"search": {"space": space, **search}}, TuneConfig)


@pytest.mark.parametrize("space, message", [
    ({"train.optim.lr": {"type": "float", "low": 1.0, "high": 0.1}},
     "search.space.train.optim.lr: low=1 > high=0.1; need low <= high"),
    ({"train.optim.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}},
     "search.space.train.optim.lr: log=true needs low > 0, got low=0"),
    ({"train.optim.lrr": LR},
     "search.space.train.optim.lrr: unknown key 'train.optim.lrr'; allowed: betas"),
    ({"train.optimizer": ["adam"]}, "search.space.train.optimizer: unknown key"),
    ({"model.widht": {"type": "float", "low": 0.5, "high": 2}}, "search.space.model.widht:"),
    ({"train.optim.name": ["adam", "sgdd"]}, "search.space.train.optim.name:"),
    ({"train.optim.momentum": {"type": "float", "low": 0.5, "high": 1.0}},
     "search.space.train.optim.momentum: train.optim.momentum=1.0"),
    ({"train.batch_size": {"type": "int", "low": 16, "high": 64.5}},
     "int needs integer low, high and step"),
    ({"train.optim.name": {"type": "categorical", "choices": []}}, "non-empty 'choices'"),
    ({"train.optim.lr": {**LR, "when": {"train.optim.nme": "sgd"}}},
     "search.space.train.optim.lr.when: unknown key 'train.optim.nme'"),
    ({"train.epochs.x": {"type": "int", "low": 1, "high": 2}}, "'epochs' is not a section"),
    ({"search.trials": {"type": "int", "low": 1, "high": 2}}, "not a tunable key"),
    ({"train.optim.momentum": {"type": "float", "low": 0.8, "high": 0.95,
                               "when": {"train.optim.name": ["sgd", "momentm"]}}},  # the 2nd value too
     "search.space.train.optim.momentum.when: train.optim.name: unknown optimizer 'momentm'"),
    ({"train.optim.lr": {**LR, "grid": []}},
     "search.space.train.optim.lr: grid=[]: need a non-empty list of values or a count >= 1"),
    ({"train.batch_size": {"type": "float", "low": 16, "high": 64}},  # fractions for an int key
     "search.space.train.batch_size: train.batch_size=40.5: Input should be a valid integer"),
    # choices Python takes for one value: optuna stores a choice by index, the later never drawn
    ({"train.seed": [1, 1.0, True]}, "search.space.train.seed.choices: 1.0 is equal to 1 in Python"),
    ({"train.seed": [0, False]}, "search.space.train.seed.choices: false is equal to 0 in Python"),
    ({"train.seed": [3, 3]}, "search.space.train.seed.choices: 3 is listed twice; list each value once"),
    ({"train.optim.lr": {**LR, "grid": [0.01, 0.01]}}, "train.optim.lr.grid: 0.01 is listed twice"),
    # a condition naming a value its axis never draws
    ({"train.optim.name": ["adam", "momentum"],
      "train.optim.momentum": {"type": "float", "low": 0.8, "high": 0.9,
                               "when": {"train.optim.name": "sgd"}}},
     "search.space.train.optim.momentum.when: train.optim.name never takes 'sgd'; its axis "
     "draws 'adam', 'momentum'"),
    ({"train.batch_size": {"type": "int", "low": 16, "high": 64, "step": 16},
      "train.optim.lr": {**LR, "when": {"train.batch_size": [32, 40]}}},
     "train.batch_size never takes 40; its axis draws int values in [16, 64] on step 16"),
    # a condition on a fixed key (no axis changes it) that never holds: the axis never sampled
    ({"train.optim.momentum": {"type": "float", "low": 0.8, "high": 0.9,
                               "when": {"train.optim.name": "momentum"}}},
     "search.space.train.optim.momentum.when: train.optim.name is fixed at 'adam' (not a search "
     "axis), never 'momentum', so the axis would never be sampled"),
    ({"train.optim.lr": {**LR, "when": {"train.batch_size": [32, 128]}}},
     "search.space.train.optim.lr.when: train.batch_size is fixed at 64 (not a search axis), "
     "never 32 or 128"),
    ({"train.optim.lr": {**LR, "when": {"train.optim": "sgd"}}},
     "search.space.train.optim.lr.when: train.optim is a section; a condition reads one key, "
     "e.g. train.optim.name"),
    # an axis split into sections (YAML nesting, or a --set naming an axis the file lacks)
    ({"train.optim.lr": LR, "train": {"optim": {"lrx": {"high": 0.1}}}},
     "search.space: no axis 'train.optim.lrx'; axes: train.optim.lr (an axis is one dotted key"),
    ({"model": {"dropout": [0.1, 0.2]}}, "search.space: no axis 'model.dropout'; axes: none"),
    ({"train.optim.lr": 0.01}, "search.space.train.optim.lr: 0.01 is not an axis; give a list of "
                               "choices or a mapping {type: float|int|categorical, ...}"),
    # keys an axis does not have, or has only for the other kind of axis
    ({"train.optim.lr": {**LR, "lgo": True}},
     "search.space.train.optim.lr: unknown key 'lgo'; allowed: choices, grid, high, log, low, "
     "step, type, when"),
    ({"train.optim.lr": {**LR, "choices": [0.01]}},
     "search.space.train.optim.lr: a float axis takes no 'choices'; it takes low, high, log"),
    ({"train.optim.name": {"type": "categorical", "choices": ["adam"], "low": 1}},
     "a categorical axis takes no 'low'; it takes choices, grid, when"),
    # YAML's true passed as 1: a one-point grid, a step of 1
    ({"train.optim.lr": {**LR, "grid": True}},
     "search.space.train.optim.lr.grid=True: need a number, got a boolean"),
    ({"train.optim.lr": {**LR, "step": True}}, "train.optim.lr.step=True: need a number"),
    ({"train.epochs": {"type": "int", "low": 0, "high": 3, "grid": [True, 2]}},
     "search.space.train.epochs.grid: true is not a number in [0, 3]"),
    ({"train.optim.name": {"type": "categorical", "choices": ["adam", "sgd"], "grid": 2}},
     "grid=2: a count is for float and int axes; a categorical grid lists some of its choices"),
    # optuna fails every trial the grid sampler gives a value outside the choices
    ({"train.optim.name": {"type": "categorical", "choices": ["adam", "sgd"],
                           "grid": ["adam", "rmsprop"]}},
     "search.space.train.optim.name.grid: 'rmsprop' is not one of its choices; allowed: 'adam', 'sgd'"),
])
def test_bad_space_is_one_clear_line(space, message):
    with pytest.raises(ConfigError) as err:
        _cfg(space)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("search, message", [
    ({"sampler": "annealing"}, "unknown sampler 'annealing'; valid: cmaes, grid"),
    ({"pruner": {"name": "median", "options": {"n_startup": 3}}},
     "search.pruner.options.n_startup: unknown option of pruner 'median'"),
    ({"sampler": "grid"}, "the grid sampler needs 'step' or 'grid'"),
    ({"objectives": [{"metric": "test_accuracy"}]}, "tuning on the test split leaks"),
    ({"objectives": [{"metric": "val_acc"}, {"metric": "val_acc"}]}, "names a metric twice"),
    ({"objectives": [{"metric": "flops"}]}, "unknown metric; allowed: val_<metric>, params"),
    ({"objectives": [{"metric": "val_accuracy"}, {"metric": "params"}], "sampler": "cmaes"},
     "handles one objective"),
    ({"objectives": [{"metric": "val_accuracy"}, {"metric": "params"}], "pruner": "asha"},
     "search.pruner.name='asha' handles one objective; for 2 use pareto or none"),
    ({"pruner": "pareto"}, "'pareto' needs 2 or more objectives"),
    ({"objectives": [{"metric": "val_widgets"}]}, "direction is needed"),
    ({"constraints": [{"metric": "params"}]}, "needs 'min' or 'max'"),
    ({"constraints": [{"metric": "params", "min": 5, "max": 1}]}, "min=5 > max=1; no trial could meet it"),
    ({"heartbeat": 5, "grace": 2}, "grace=2 must exceed heartbeat=5"),
    # values optuna takes when built and fails on in every trial
    ({"sampler": {"name": "tpe", "options": {"n_startup_trials": "5"}}},
     "search.sampler.options.n_startup_trials: '5' is a str; allowed: int"),
    ({"sampler": {"name": "tpe", "options": {"n_startup_trials": 1.5}}}, "1.5 is a float"),
    ({"sampler": {"name": "tpe", "options": {"n_ei_candidates": 0}}},
     "search.sampler.options.n_ei_candidates: 0 is too small; allowed: >= 1"),
    ({"sampler": {"name": "qmc", "options": {"scramble": "yes"}}}, "allowed: bool"),
    ({"sampler": {"name": "cmaes", "options": {"popsize": 0}}}, "popsize: 0 is too small"),
    # optuna clamps it to 1e-10: every CMA-ES trial would sit on the mean
    ({"sampler": {"name": "cmaes", "options": {"sigma0": -1.0}}},
     "search.sampler.options.sigma0: -1.0 is too small; allowed: > 0"),
    ({"sampler": {"name": "cmaes", "options": {"sigma0": 0}}}, "sigma0: 0 is too small; allowed: > 0"),
    ({"sampler": "grid", "space": {
        "train.optim.lr": {**LR, "grid": [0.01, 0.1]},
        "train.optim.momentum": {"type": "float", "low": 0.5, "high": 0.9, "grid": [0.5, 0.9],
                                 "when": {"train.optim.lr": 0.05}}}},  # inside lr's bounds
     "search.space.train.optim.momentum.when: the grid sampler never gives train.optim.lr 0.05; "
     "its grid: 0.01, 0.1"),
    ({"sampler": {"name": "random", "seed": -1}},
     "search.sampler.seed=-1: Input should be greater than or equal to 0"),
    # a start CMA-ES cannot use fails every trial after the start-up ones
    ({"sampler": {"name": "cmaes", "options": {"x0": {"train.optim.lr": 5.0}}}},
     "search.sampler.options.x0.train.optim.lr: 5.0 is not a number in [0.0001, 0.1]"),
    ({"sampler": {"name": "cmaes", "options": {"x0": {"train.optim.lrr": 0.01}}}},
     "search.sampler.options.x0: 'train.optim.lrr' is not an axis CMA-ES models; allowed: "
     "train.optim.lr"),
    ({"sampler": {"name": "cmaes", "options": {"x0": {}}}},
     "search.sampler.options.x0: no start value for train.optim.lr; give one for each of"),
    ({"pruner": {"name": "hyperband", "options": {"min_resource": 0}}},
     "search.pruner.options.min_resource: 0 is too small; allowed: >= 1"),
    ({"pruner": {"name": "hyperband", "options": {"reduction_factor": 1}}}, ">= 2"),
    ({"pruner": {"name": "median", "options": {"n_warmup_steps": "a"}}}, "'a' is a str"),
    ({"pruner": {"name": "asha", "options": {"min_resource": 2.0}}}, "allowed: str | int"),
])
def test_bad_search_settings(search, message):
    with pytest.raises(ConfigError, match=None) as err:
        _cfg(**{"space": {"train.optim.lr": LR}, **search})
    assert message in str(err.value)


@pytest.mark.parametrize("search", [
    {"sampler": {"name": "tpe", "options": {"n_startup_trials": 3, "n_ei_candidates": 12,
                                            "multivariate": False}}},
    {"sampler": {"name": "cmaes", "options": {"popsize": 4, "n_startup_trials": 2,
                                              "restart_strategy": None}}},
    {"sampler": {"name": "cmaes", "options": {"x0": {"train.optim.lr": 0.01}, "sigma0": 0.1}}},
    {"sampler": {"name": "qmc", "options": {"qmc_type": "halton"}}},
    {"pruner": {"name": "asha", "options": {"min_resource": "auto", "reduction_factor": 2}}},
    {"pruner": {"name": "hyperband", "options": {"max_resource": 9}}},
])
def test_good_option_values_pass(search):
    assert _cfg({"train.optim.lr": LR}, **search).search.space


@pytest.mark.parametrize("axis, line", [
    ({"type": "float", "low": 1.0, "high": 0.1},
     "error: search.space.train.optim.lr: low=1 > high=0.1; need low <= high"),
    ({"type": "float", "low": 0.0, "high": 1.0, "log": True},
     "error: search.space.train.optim.lr: log=true needs low > 0, got low=0"),
    ({"type": "float", "low": -1.0, "high": 1.0, "log": True},
     "error: search.space.train.optim.lr: log=true needs low > 0, got low=-1"),
    ({"type": "float", "low": 0.1, "high": 1.0, "lgo": True},
     "error: search.space.train.optim.lr: unknown key 'lgo'; allowed: choices, grid, high, log, "
     "low, step, type, when; did you mean 'log'?"),
    ({"type": "float", "low": 0.1, "high": 1.0, "lowe": 1},  # an axis's own key: a guess too
     "error: search.space.train.optim.lr: unknown key 'lowe'; allowed: choices, grid, high, log, "
     "low, step, type, when; did you mean 'low'?"),
    ({"type": "categorical", "choices": [1, 1.0, True]},
     "error: search.space.train.optim.lr.choices: 1.0 is equal to 1 in Python (1 == 1.0 == true, "
     "0 == 0.0 == false); list each value once"),
])
def test_cli_bad_range_exit_2_one_line(tmp_path, axis, line):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"search": {"space": {"train.optim.lr": axis}}}))
    res = runner.invoke(app, ["tune", str(path), "--study-dir", str(tmp_path / "s")])
    assert res.exit_code == 2
    assert [ln for ln in res.output.splitlines() if ln.strip()] == [line]
    assert not (tmp_path / "s").exists()  # refused before anything ran


def test_cli_unknown_key_exit_2(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"search": {"space": {"train.optim.lrate": LR}}}))
    res = runner.invoke(app, ["tune", str(path)])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert res.output.startswith("error: search.space.train.optim.lrate: unknown key "
                                 "'train.optim.lrate'; allowed: betas,")


@pytest.mark.parametrize("search, words", [
    ({}, "search.space: missing; a search section needs space: a mapping of config keys to axes"),
    ({"space": {}}, "search.space: empty; a search section needs space: a mapping"),
    ({"space": ["train.optim.lr"]}, "search.space: got a list; a search section needs space:"),
    ({"trials": 3, "space": None}, "search.space: got null; a search section needs space:"),
    (5, "search: need a mapping, got a number; a search section needs space:"),
])
def test_a_search_section_without_axes_says_what_it_needs(tmp_path, search, words):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"search": search}))
    res = runner.invoke(app, ["tune", str(path), "--study-dir", str(tmp_path / "s")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith(f"error: {words}") and "e.g. space: {train.optim.lr:" in res.output
    assert not (tmp_path / "s").exists()


def test_a_condition_on_a_fixed_key_that_holds_samples_the_axis():
    cfg = parse_config({"train": {"optim": {"name": "momentum"}}, "search": {"space": {
        "train.optim.momentum": {"type": "float", "low": 0.8, "high": 0.9,
                                 "when": {"train.optim.name": ["sgd", "momentum"]}},
        "train.optim.lr": LR}}}, TuneConfig)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = SearchSpace(cfg.search.space).sample(study.ask(), cfg.model_dump(mode="json"))
    assert 0.8 <= params["train.optim.momentum"] <= 0.9


def test_a_condition_on_a_model_option_left_at_its_default_reads_the_default():
    # mlp's width defaults to 256: a key the trial's model has, not "unknown key 'model.width'"
    def cfg(want):
        return parse_config({"model": {"name": "mlp"}, "search": {"space": {
            "train.optim.lr": {**LR, "when": {"model.width": want}}}}}, TuneConfig)

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    held = cfg(256)
    params = SearchSpace(held.search.space).sample(study.ask(), held.model_dump(mode="json"))
    assert set(params) == {"train.optim.lr"}
    with pytest.raises(ConfigError) as err:
        cfg(1)
    assert str(err.value).startswith("search.space.train.optim.lr.when: model.width is fixed at "
                                     "256 (not a search axis), never 1, so the axis would never")


def test_a_condition_on_a_model_option_reads_the_default_of_the_model_drawn():
    # mlp's width defaults to 256, lenet5's to 1.0; lr is listed first, so the model.name axis
    # must still be drawn before lr's condition reads the drawn model's default
    def cfg(want):
        return parse_config({"model": {"name": "mlp"}, "search": {"space": {
            "train.optim.lr": {**LR, "when": {"model.width": want}},
            "model.name": ["mlp", "lenet5"]}}}, TuneConfig)

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    held = cfg(1.0)
    drawn = [SearchSpace(held.search.space).sample(study.ask(), held.model_dump(mode="json"))
             for _ in range(8)]
    assert {p["model.name"] for p in drawn} == {"mlp", "lenet5"}
    assert all(("train.optim.lr" in p) == (p["model.name"] == "lenet5") for p in drawn)
    with pytest.raises(ConfigError) as err:
        cfg(3)
    assert str(err.value).startswith("search.space.train.optim.lr.when: model.width is not a search "
                                     "axis and is left at the default of the model drawn (mlp: "
                                     "256, lenet5: 1.0), never 3, so the axis would never")


def test_conditional_axis_only_when_parent_matches():
    cfg = _cfg({
        "train.optim.momentum": {"type": "float", "low": 0.5, "high": 0.99,
                                 "when": {"train.optim.name": "momentum"}},
        "train.optim.name": ["adam", "momentum"],
        "train.optim.lr": LR,
    })
    space = SearchSpace(cfg.search.space)
    # the condition's axis is sampled first although it is listed second
    assert [a.path for a in space.axes][:2] == ["train.optim.name", "train.optim.momentum"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    base = cfg.model_dump(mode="json")
    seen = set()
    for _ in range(20):
        params = space.sample(study.ask(), base)
        seen.add(params["train.optim.name"])
        assert ("train.optim.momentum" in params) == (params["train.optim.name"] == "momentum")
        run = SearchSpace.apply(cfg, params)
        assert run.train.optim.lr == params["train.optim.lr"]
        assert not hasattr(run, "search")
    assert seen == {"adam", "momentum"}


def test_int_step_log_and_list_shorthand():
    cfg = _cfg({
        "train.batch_size": {"type": "int", "low": 32, "high": 256, "step": 32},
        "model.width": {"type": "float", "low": 0.5, "high": 2.0, "log": True},
        "model.activation": ["relu", "gelu"],
    })
    space = SearchSpace(cfg.search.space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        p = space.sample(study.ask(), {})
        assert p["train.batch_size"] % 32 == 0 and 32 <= p["train.batch_size"] <= 256
        assert 0.5 <= p["model.width"] <= 2.0 and p["model.activation"] in ("relu", "gelu")


def test_grid_values():
    cfg = _cfg({
        "train.optim.lr": {**LR, "grid": 4},
        "train.batch_size": {"type": "int", "low": 32, "high": 128, "step": 32},
        "train.optim.weight_decay": {"type": "float", "low": 0.0, "high": 0.1, "step": 0.05},
        "train.loss.label_smoothing": {"type": "float", "low": 0.0, "high": 0.2,
                                       "grid": [0.0, 0.2]},
        "train.optim.name": ["adam", "nadam"],  # both use eps
        "train.epochs": {"type": "int", "low": 2, "high": 8, "grid": 1},
        "train.optim.eps": {"type": "float", "low": 1e-9, "high": 1e-7, "log": True, "grid": 1},
    }, sampler="grid")
    grid = SearchSpace(cfg.search.space).grid()
    assert grid["train.epochs"] == [2] and grid["train.optim.eps"] == [1e-9]  # linspace's n=1
    assert grid["train.optim.lr"] == [1e-4, 1e-3, 1e-2, 1e-1]
    assert grid["train.batch_size"] == [32, 64, 96, 128]
    assert grid["train.optim.weight_decay"] == [0.0, 0.05, 0.1]
    assert grid["train.loss.label_smoothing"] == [0.0, 0.2]
    assert grid["train.optim.name"] == ["adam", "nadam"]


def test_grid_filter_keeps_one_point_per_distinct_trial():
    from dlopt.tune._samplers import AskTellGridSampler

    def grid_size(grid, keep=None):
        return AskTellGridSampler(grid, seed=0, keep=keep).grid_size

    cfg = parse_config({"train": {"optim": {"name": "momentum"}}, "search": {"space": {
        "train.optim.momentum": {"type": "float", "low": 0.5, "high": 0.9, "grid": 3,
                                 "when": {"train.optim.name": "momentum"}},  # a key outside the space
        "train.optim.lr": {**LR, "grid": 2},
    }}}, TuneConfig)
    space = SearchSpace(cfg.search.space)
    base = cfg.model_dump(mode="json", exclude={"search"})
    assert grid_size(space.grid()) == 6
    assert grid_size(space.grid(), space.grid_filter(base)) == 6
    base["train"]["optim"]["name"] = "adam"
    assert grid_size(space.grid(), space.grid_filter(base)) == 2  # adam: momentum never read
