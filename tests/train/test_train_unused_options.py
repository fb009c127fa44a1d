"""Options the chosen optimizer, schedule or loss does not use are refused when the user set
them (they were silently ignored); configs dlopt wrote itself are re-read as they are.
``dlopt.fit`` takes a data config mapping as ``data``."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.config import load_config, parse_config
from dlopt.errors import ConfigError
from dlopt.train import fit, load

from train_helpers import DATA, MODEL, one_error_line

runner = CliRunner()
TINY = {"name": "unused", "data": DATA, "model": MODEL,
        "train": {"epochs": 1, "batch_size": 48, "progress": False, "threads": 1}}


def _train(tmp_path, *args: str):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(TINY))
    return runner.invoke(app, ["train", str(config), "--run-dir", str(tmp_path / "run"), "--device", "cpu", *args])


@pytest.mark.parametrize("overrides, says", [
    (["train.optim.name=adam", "train.optim.momentum=0.9"], "momentum is not used by optimizer 'adam'; "
                                                             "it applies to momentum, nesterov"),
    (["train.optim.name=sgd", "train.optim.betas=[0.8,0.9]"], "betas is not used by optimizer 'sgd'"),
    (["train.schedule.name=step", "train.schedule.min_lr=0.001"], "min_lr is not used by schedule 'step'; "
                                                                   "it applies to cosine, polynomial"),
    (["train.schedule.name=cosine", "train.schedule.milestones=[1]"], "it applies to multistep"),
    (["train.schedule.patience=1"], "patience is not used by schedule 'constant'; it applies to plateau"),
    (["train.loss.huber_delta=2"], "huber_delta is not used by loss 'auto'; it applies to huber"),
])
def test_an_option_the_choice_does_not_use_is_refused_before_training(tmp_path, overrides, says) -> None:
    sets = [a for o in overrides for a in ("--set", o)]
    line = one_error_line(_train(tmp_path, *sets), 2)
    assert says in line and "remove it or choose one of those" in line
    assert not (tmp_path / "run").exists()  # refused at config load: nothing written


@pytest.mark.parametrize("overrides", [
    ["train.optim.name=nesterov", "train.optim.momentum=0.8"],
    ["train.optim.name=adamw", "train.optim.betas=[0.8,0.9]", "train.optim.eps=1e-7", "train.optim.weight_decay=0.01"],
    ["train.schedule.name=cosine", "train.schedule.min_lr=0.001", "train.schedule.warmup_epochs=0.5"],
    ["train.schedule.name=multistep", "train.schedule.milestones=[2]", "train.schedule.gamma=0.5"],
    ["train.schedule.name=plateau", "train.schedule.patience=1", "train.schedule.factor=0.5"],
    ["train.loss.name=huber", "train.loss.huber_delta=2"],
    ["train.loss.label_smoothing=0.1"],  # auto: cross-entropy on classification data applies it
    # an option set to its "off" default asks for nothing that would be lost
    ["train.loss.name=mse", "train.loss.label_smoothing=0", "train.loss.class_weights=none"],
])
def test_options_the_choice_uses_are_accepted(overrides) -> None:
    load_config(None, overrides)


def test_configs_dlopt_wrote_are_reread_without_refusal(tmp_path) -> None:
    assert _train(tmp_path, "--set", "train.optim.name=adam").exit_code == 0
    saved = tmp_path / "run" / "config.yaml"
    assert yaml.safe_load(saved.read_text())["train"]["optim"]["momentum"] == 0.9  # every field written
    res = runner.invoke(app, ["train", str(saved), "--run-dir", str(tmp_path / "run"), "--device", "cpu",
                              "--resume", "--set", "train.epochs=2"])
    assert res.exit_code == 0, res.output
    assert load(tmp_path / "run").config.train.optim.name == "adam"
    # a study's trial config: the whole base with one axis changed (tune's Space.apply)
    data = load_config(saved).model_dump(mode="json")
    data["train"]["optim"]["name"] = "sgd"
    assert parse_config(data).train.optim.name == "sgd"


def test_fit_keywords_are_checked_against_the_config_options_set(tmp_path) -> None:
    cfg = parse_config({**TINY, "train": {**TINY["train"], "optim": {"name": "momentum", "momentum": 0.5}}})
    with pytest.raises(ConfigError, match="momentum is not used by optimizer 'adam'"):
        fit(config=cfg, optimizer="adam", run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_fit_takes_a_data_config_mapping(tmp_path) -> None:
    res = fit(MODEL, {"name": "mnist", "subset": 120, "test_subset": 50}, run_dir=tmp_path / "r",
              epochs=1, batch_size=48, progress=False, threads=1)
    assert res.summary["dataset"] == "mnist" and res.summary["n_train"] + res.summary["n_val"] == 120
    with pytest.raises(ConfigError, match="unknown key 'data.subest'; allowed: .*subset"):
        fit("lenet5", {"name": "mnist", "subest": 120}, run_dir=tmp_path / "bad")
