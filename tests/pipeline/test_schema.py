"""Pipeline files are validated before anything runs: one line, exit code 2."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.errors import ConfigError
from dlopt.pipeline import parse_pipeline, stage_order

runner = CliRunner()

BASE = {"data": {"name": "mnist", "subset": 500}, "model": {"name": "mlp", "width": 16}, "train": {"epochs": 1}}


def _pipe(*stages: dict) -> dict:
    return {"name": "p", "base": BASE, "stages": list(stages)}


def test_valid_pipeline_orders_stages_after_their_inputs():
    cfg, opts = parse_pipeline(_pipe({"name": "onnx", "type": "export", "input": "train"}, {"name": "train"}))
    assert [s.name for s in stage_order(cfg)] == ["train", "onnx"]
    assert opts["train"].config == {}


@pytest.mark.parametrize("stages, message", [
    ([{"name": "train"}, {"name": "x", "type": "trian"}], "unknown stage type 'trian'; allowed: bench"),
    ([{"name": "export"}], "stage type 'export' needs an 'input'"),
    ([{"name": "bench"}], "stage type 'bench' needs 'inputs'"),
    ([{"name": "train"}, {"name": "export", "input": "tarin"}], "input 'tarin' is not a stage; allowed: train, export"),
    ([{"name": "a", "type": "train", "input": "b"}, {"name": "b", "type": "train", "input": "a"}],
     "stages form a cycle: a -> b -> a"),
    ([{"name": "train"}, {"name": "retrain", "input": "train"}], "input 'train' gives a 'run'; retrain takes: study"),
    ([{"name": "train", "config": {"train": {"epochs": 0}}}], "train.epochs=0"),
    ([{"name": "train", "epochs": 2}], "unknown key 'epochs'"),
    ([{"name": "train"}, {"name": "train"}], "stage name 'train' is used twice"),
    ([{"name": "lr_find", "min_lr": 1.0, "max_lr": 0.1}], "min_lr=1 >= max_lr=0.1"),
    ([{"name": "train"}, {"name": "quantize", "input": "train", "conv_kernel": "amx"}],
     "conv_kernel='amx': Input should be 'auto', 'direct' or 'gemm'"),
    ([{"name": "sweep", "variants": {"bad": {"train": {"optim": {"name": "nope"}}}}}], "variants.bad: "),
    # a stage's folder beside the run's own files: results.json would be removed as a stage folder
    ([{"name": "results.json", "type": "train"}], "'results.json' is the name of a run directory file"),
    ([{"name": "Report-Files", "type": "train"}], "'Report-Files' is the name of a run directory file"),
])
def test_invalid_pipelines_fail_with_one_line(stages, message):
    with pytest.raises(ConfigError) as err:
        parse_pipeline(_pipe(*stages))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("stages, words", [
    ([{"name": "a", "type": "train", "input": "b"}, {"name": "b", "type": "train", "input": "a"}], "cycle"),
    ([{"name": "train"}, {"name": "distill", "input": "train", "student": "lenet9"}], "unknown model 'lenet9'"),
])
def test_cli_refuses_a_bad_pipeline_before_running(stages, words, tmp_path):
    path = tmp_path / "p.yaml"
    doc = _pipe(*stages)
    doc["runs_dir"] = str(tmp_path / "runs")
    path.write_text(yaml.safe_dump(doc))
    res = runner.invoke(app, ["run", str(path)])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and words in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing written


def test_cli_unknown_override_key(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_pipe({"name": "train"})))
    res = runner.invoke(app, ["run", str(path), "--set", "bogus=1"])
    assert res.exit_code == 2 and "unknown key 'bogus'" in res.output


def test_cli_unusable_run_dir_is_one_line_exit_2(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_pipe({"name": "train"})))
    (tmp_path / "afile").write_text("")
    for run_dir in (tmp_path / "afile", tmp_path / "afile" / "below"):
        res = runner.invoke(app, ["run", str(path), "--run-dir", str(run_dir)])
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1, res.output
        assert f"run directory {run_dir}: cannot create it" in lines[0]
