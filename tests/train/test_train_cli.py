"""``dlopt train``, ``dlopt eval`` and ``dlopt predict`` in-process (typer's CliRunner):
the happy path on a real MNIST slice, and bad input answered with one line and its exit
code, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dlopt.cli import app

from train_helpers import DATA, MODEL, one_error_line

runner = CliRunner()

TINY = {"name": "cli-tiny", "data": DATA, "model": MODEL,
        "train": {"epochs": 1, "batch_size": 48, "progress": False, "threads": 1}}


def _write(tmp_path: Path, cfg: dict, name: str = "c.yaml") -> Path:
    f = tmp_path / name
    f.write_text(yaml.safe_dump(cfg))
    return f


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    run = tmp / "run"
    res = runner.invoke(app, ["train", str(_write(tmp, TINY)), "--run-dir", str(run), "--device", "cpu",
                              "--threads", "1"])
    assert res.exit_code == 0, res.output
    first, second = res.output.strip().splitlines()[-2:]
    assert first.startswith("test loss") and " accuracy " in first and " f1_macro " in first
    assert second.startswith(f"run: {run}") and "1 epochs" in second
    return run


def test_train_writes_the_run_directory(trained) -> None:
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "model.safetensors", "checkpoints/last"):
        assert (trained / name).exists(), name
    assert yaml.safe_load((trained / "config.yaml").read_text())["train"]["threads"] == 1
    assert len((trained / "metrics.jsonl").read_text().splitlines()) == 1


def test_eval_prints_the_summary_test_metrics(trained) -> None:
    res = runner.invoke(app, ["eval", str(trained), "--threads", "1"])
    assert res.exit_code == 0, res.output
    got = dict(line.split(" ", 1) for line in res.output.strip().splitlines())
    test = json.loads((trained / "summary.json").read_text())["test"]
    assert float(got["accuracy"]) == pytest.approx(test["accuracy"], abs=1e-4)
    assert {"loss", "f1_macro", "auc"} <= set(got)


def test_eval_of_a_checkpoint_directory(trained) -> None:
    res = runner.invoke(app, ["eval", str(trained / "checkpoints" / "last")])
    assert res.exit_code == 0 and "accuracy" in res.output


def test_predict_npy_csv_and_image_apply_the_saved_preprocessing(trained, tmp_path) -> None:
    from PIL import Image

    from dlopt.data._load import read_raw
    from dlopt.train import load

    raw = read_raw("mnist").x_test[:3]  # uint8 (3, 1, 28, 28), as the dataset stores it
    expected, _ = load(trained).predict(raw)
    np.save(tmp_path / "x.npy", raw)
    np.savetxt(tmp_path / "x.csv", raw.reshape(3, -1), fmt="%d", delimiter=",")
    Image.fromarray(raw[0, 0]).save(tmp_path / "x.png")
    for name, n in (("x.npy", 3), ("x.csv", 3), ("x.png", 1)):
        res = runner.invoke(app, ["predict", str(trained), str(tmp_path / name), "--top", "2"])
        assert res.exit_code == 0, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == n
        for i, line in enumerate(lines):
            assert line.startswith(f"{i}: class {expected[i]}  (") and line.count(": 0.") + line.count(": 1.") == 2


def test_predict_bad_input_file_is_one_line(trained, tmp_path) -> None:
    (tmp_path / "x.txt").write_text("1,2,3")
    assert "input file type" in one_error_line(runner.invoke(app, ["predict", str(trained), str(tmp_path / "x.txt")]), 2)
    np.save(tmp_path / "bad.npy", np.zeros((2, 5)))
    assert "does not match the raw sample shape" in one_error_line(
        runner.invoke(app, ["predict", str(trained), str(tmp_path / "bad.npy")]), 2)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_npy_value_is_refused_where_it_is_read(trained, tmp_path, bad) -> None:
    # it was refused after preprocessing, counting values the file never held, at no index
    x = np.zeros((3, 1, 28, 28), np.float32)
    x[1, 0, 5, 7] = bad
    np.save(tmp_path / "x.npy", x)
    line = one_error_line(runner.invoke(app, ["predict", str(trained), str(tmp_path / "x.npy")]), 2)
    assert line.startswith(f"error: {tmp_path / 'x.npy'}: {bad} at index [1, 0, 5, 7] (1 such value(s)); "
                           "allowed: finite numbers"), line
    from dlopt.errors import DataError
    from dlopt.train import load

    with pytest.raises(DataError, match=rf"^input: {bad} at index \[1, 0, 5, 7\]"):  # the Python API too
        load(trained).predict(x)


def test_a_missing_csv_cell_of_a_run_that_imputes_none_is_named_by_line(trained, tmp_path) -> None:
    rows = np.zeros((3, 784), dtype=int).astype(str)
    rows[1, 9] = "NA"
    (tmp_path / "x.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    line = one_error_line(runner.invoke(app, ["predict", str(trained), str(tmp_path / "x.csv")]), 2)
    assert line.startswith(f"error: CSV {tmp_path / 'x.csv'} line 2, column 10: 'NA' is a missing value, "
                           "and the run imputes none"), line


def test_a_non_empty_run_dir_needs_resume_or_overwrite(trained, tmp_path) -> None:
    cfg = _write(tmp_path, TINY)
    line = one_error_line(runner.invoke(app, ["train", str(cfg), "--run-dir", str(trained)]), 2)
    assert "--resume" in line and "--overwrite" in line


def test_compress_verbs_do_not_suggest_a_resume_they_lack(trained, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("a user's file")
    res = runner.invoke(app, ["prune", str(trained), "--out", str(out), "--target", "macs=0.5"])
    line = one_error_line(res, 2)
    assert "is not empty; pass --overwrite to start over" in line and "--resume" not in line


def test_resume_continues_a_copy_for_more_epochs(trained, tmp_path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run, symlinks=True)
    cfg = _write(tmp_path, TINY)
    res = runner.invoke(app, ["train", str(cfg), "--run-dir", str(run), "--resume", "--set", "train.epochs=2"])
    assert res.exit_code == 0, res.output
    assert [json.loads(r)["epoch"] for r in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def _rows(run: Path) -> list[tuple[int, int, float]]:
    return [(r["epoch"], r["step"], r["val_loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


@pytest.mark.parametrize("budget", ["train.max_steps=6", "train.max_steps=null"])
def test_a_raised_step_budget_on_resume_continues_the_cut_epoch_exactly(tmp_path, budget) -> None:
    """max_steps=3 cuts the only epoch (6 steps) short; resuming with a higher budget used to
    end at once (the cut epoch counted as done). It must train on as one uninterrupted run."""
    from train_helpers import assert_same_weights, weights

    cfg = _write(tmp_path, {**TINY, "train": {**TINY["train"], "deterministic": True}})
    run, full = tmp_path / "run", tmp_path / "full"
    assert runner.invoke(app, ["train", str(cfg), "--run-dir", str(run), "--set", "train.max_steps=3"]).exit_code == 0
    cut = json.loads((run / "summary.json").read_text())
    again = runner.invoke(app, ["train", str(cfg), "--run-dir", str(run), "--resume", "--set", "train.max_steps=3"])
    assert again.exit_code == 0, again.output  # the same budget: the same finished run
    same = json.loads((run / "summary.json").read_text())
    assert {**same, "train_seconds": 0, "test_seconds": 0} == {**cut, "train_seconds": 0, "test_seconds": 0}
    res = runner.invoke(app, ["train", str(cfg), "--run-dir", str(run), "--resume", "--set", budget])
    assert res.exit_code == 0, res.output
    assert runner.invoke(app, ["train", str(cfg), "--run-dir", str(full), "--set", budget]).exit_code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert (cut["steps"], summary["steps"]) == (3, 6)
    assert _rows(run) == _rows(full) and len(_rows(run)) == 1
    assert_same_weights(weights(run), weights(full))
    assert summary["test"] == json.loads((full / "summary.json").read_text())["test"]
    assert (run / "config.yaml").read_text() == (full / "config.yaml").read_text()  # it re-runs the run


def test_a_raised_budget_on_an_early_stopped_run_is_refused_and_the_run_kept(tmp_path) -> None:
    # min_delta 1.0: no epoch improves on the first, so patience 1 stops after epoch 2 of 4
    es = {"enabled": True, "patience": 1, "min_delta": 1.0}
    cfg = _write(tmp_path, {**TINY, "train": {**TINY["train"], "epochs": 4, "max_steps": 20,
                                                    "early_stopping": es}})
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", str(cfg), "--run-dir", str(run)]).exit_code == 0
    before = {f: (run / f).read_bytes() for f in ("summary.json", "metrics.jsonl", "model.safetensors")}
    assert json.loads(before["summary.json"])["stop_reason"].startswith("early stopping")
    for raise_ in ("train.epochs=6", "train.max_steps=30", "train.max_steps=null"):
        line = one_error_line(runner.invoke(app, ["train", str(cfg), "--run-dir", str(run), "--resume",
                                                  "--set", raise_]), 2)
        assert "early stopping ended it at epoch 2" in line and "transfer.init_from" in line, raise_
    assert {f: (run / f).read_bytes() for f in before} == before
    same = runner.invoke(app, ["train", str(cfg), "--run-dir", str(run), "--resume"])  # e.g. a pipeline rerun
    assert same.exit_code == 0, same.output


@pytest.mark.parametrize("override, words", [
    ("train.optim.name=adamx", ["train.optim.name", "adamx", "adam", "nadam", "radam"]),
    ("train.schedule.name=cosinus", ["train.schedule.name", "cosinus", "cosine", "one-cycle"]),
    ("train.optim.lr=-0.01", ["train.optim.lr", "-0.01", "greater than 0"]),
    ("train.loss.name=focal", ["train.loss.name", "focal", "cross_entropy"]),
    ("train.precision=fp8", ["train.precision", "fp8", "bf16"]),
    ("train.epochs=0", ["train.epochs", "0"]),
    ("train.optim.betas=[1.0,0.999]", ["train.optim.betas", "must be in [0, 1)"]),  # was torch's traceback
    ("train.optim.layer_lr={features.*: -1}", ["train.optim.layer_lr", "'features.*'", "must be > 0"]),
    ("train.transfer.unfreeze_at_epoch=1", ["train.transfer", "nothing to unfreeze"]),  # was a no-op
    # the lr never reached its base value: the run ended inside the warm-up
    ("train.schedule.warmup_epochs=1", ["schedule.warmup_epochs=1", "run 1 epochs", "shorter than the run"]),
    ("data.name=imagenet", ["imagenet", "mnist"]),
])
def test_bad_config_is_one_line_exit_2(override, words, tmp_path) -> None:
    res = runner.invoke(app, ["train", str(_write(tmp_path, TINY)), "--run-dir", str(tmp_path / "r"),
                              "--set", override])
    line = one_error_line(res, 2)
    for w in words:
        assert w in line, line
    assert not (tmp_path / "r").exists()  # refused before anything was written


@pytest.mark.parametrize("override, words", [
    ("train.transfer.init_from=nope", ["train.transfer.init_from", "no such run"]),
    ("train.seed=1", []),  # the control: it trains
    ("data.preprocess=[{op: zscore}]", []),
])
def test_a_run_refused_at_its_start_leaves_nothing_in_the_way(override, words, tmp_path) -> None:
    """A start refused after the config and preprocessing were written (a missing transfer
    source) takes them back: the corrected command then runs without --overwrite."""
    cfg = _write(tmp_path, TINY)
    (tmp_path / "empty").mkdir()
    for run in (tmp_path / "r", tmp_path / "empty"):
        res = runner.invoke(app, ["train", str(cfg), "--run-dir", str(run), "--set", override])
        if words:
            line = one_error_line(res, 2)
            assert all(w in line for w in words), line
            assert not run.exists() if run.name == "r" else not any(run.iterdir())
        else:
            assert res.exit_code == 0, res.output
        res = runner.invoke(app, ["train", str(cfg), "--run-dir", str(run)])
        assert res.exit_code == (0 if words else 2), res.output


def test_a_warm_up_longer_than_a_step_budget_is_refused_and_a_raised_one_resumes(tmp_path) -> None:
    """6 steps per epoch: a 0.5-epoch warm-up is 3 steps. max_steps=2 ended the run inside it
    without a word; the budget is known in steps only once the data is, so it is refused there."""
    cfg = _write(tmp_path, {**TINY, "train": {**TINY["train"], "schedule": {"warmup_epochs": 0.5}}})
    run = tmp_path / "r"
    line = one_error_line(runner.invoke(app, ["train", str(cfg), "--run-dir", str(run),
                                              "--set", "train.max_steps=2"]), 2)
    assert "warm-up 3 steps, run 2 steps (train.max_steps=2)" in line and "shorter than the run" in line
    assert not run.exists()
    assert runner.invoke(app, ["train", str(cfg), "--run-dir", str(run), "--set", "train.max_steps=4"]).exit_code == 0
    res = runner.invoke(app, ["train", str(cfg), "--run-dir", str(run), "--resume", "--set", "train.max_steps=null"])
    assert res.exit_code == 0, res.output
    assert [r[:2] for r in _rows(run)] == [(1, 6)]
    before = (run / "config.yaml").read_text()  # a refused resume leaves the run's config as it was
    one_error_line(runner.invoke(app, ["train", str(cfg), "--run-dir", str(run), "--resume",
                                       "--set", "train.max_steps=2"]), 2)
    assert (run / "config.yaml").read_text() == before


@pytest.mark.parametrize("at, words", [(1, "would never unfreeze"), (0, "would never be frozen")])
def test_an_unfreezing_epoch_outside_the_run_is_refused(tmp_path, at, words) -> None:
    # the layers silently stayed frozen for the whole run (or were never frozen)
    transfer = {"freeze": ["features.*"], "unfreeze_at_epoch": at}
    cfg = _write(tmp_path, {**TINY, "train": {**TINY["train"], "transfer": transfer}})
    line = one_error_line(runner.invoke(app, ["train", str(cfg), "--run-dir", str(tmp_path / "r")]), 2)
    assert f"train.transfer.unfreeze_at_epoch={at}: run 1 epochs" in line and words in line
    assert "allowed: 1 <= unfreeze_at_epoch < train.epochs" in line
    assert not (tmp_path / "r").exists()


def test_a_refused_start_keeps_a_run_directory_that_was_not_empty(tmp_path) -> None:
    run = tmp_path / "r"
    assert runner.invoke(app, ["train", str(_write(tmp_path, TINY)), "--run-dir", str(run)]).exit_code == 0
    before = sorted(p.name for p in run.iterdir())
    res = runner.invoke(app, ["train", str(_write(tmp_path, TINY)), "--run-dir", str(run), "--overwrite",
                              "--set", "train.transfer.init_from=nope"])
    one_error_line(res, 2)
    assert before and not any(run.iterdir())  # --overwrite cleared the old run, as asked
    res = runner.invoke(app, ["train", str(_write(tmp_path, TINY)), "--run-dir", str(run), "--resume",
                              "--set", "train.transfer.init_from=nope"])
    assert "nothing to resume" in one_error_line(res, 2)


def test_unavailable_device_is_one_line_exit_2(tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res = runner.invoke(app, ["train", str(_write(tmp_path, TINY)), "--run-dir", str(tmp_path / "r"),
                              "--device", "cuda"])
    assert "device='cuda' is not available" in one_error_line(res, 2)


def test_nan_loss_is_a_clear_training_error_exit_1(tmp_path) -> None:
    """A diverging regression (SGD at lr 1e4 on raw targets) stops at the first non-finite
    step with one line naming it."""
    cfg = {"name": "diverge", "data": {"name": "diabetes"}, "model": {"name": "mlp", "width": 16},
           "train": {"epochs": 3, "batch_size": 32, "progress": False, "threads": 1,
                     "optim": {"name": "sgd", "lr": 1.0e4}, "loss": {"name": "mse"}}}
    run = tmp_path / "r"
    line = one_error_line(runner.invoke(app, ["train", str(_write(tmp_path, cfg)), "--run-dir", str(run)]), 1)
    assert "non-finite" in line and "at step" in line
    summary = run / "summary.json"
    assert not summary.exists()


def test_eval_of_a_missing_run_is_one_line(tmp_path) -> None:
    assert "not found" in one_error_line(runner.invoke(app, ["eval", str(tmp_path / "nope")]), 2)


def test_evaluate_labels_out_of_range_is_one_line(trained) -> None:
    from dlopt.errors import DataError
    from dlopt.train import load

    raw = np.zeros((4, 1, 28, 28), dtype=np.uint8)
    with pytest.raises(DataError, match=r"evaluation labels out of range: found 12, the model has 10 outputs") as err:
        load(trained).evaluate((raw, np.array([0, 1, 2, 12])))
    assert "\n" not in str(err.value)


def test_eval_on_a_dataset_of_another_shape_is_one_line(trained) -> None:
    line = one_error_line(runner.invoke(app, ["eval", str(trained), "--data", "digits"]), 2)
    assert "digits" in line or "shape" in line
