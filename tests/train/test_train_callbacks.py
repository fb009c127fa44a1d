"""Progress output (plain lines off a terminal, a rich bar on one), freezing by glob and up
to a layer, the CLI's k-fold summary, and a SIGTERM after the last step passed on, not lost."""

from __future__ import annotations

import io
import os
import re
import signal
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.errors import ConfigError
from dlopt.train import Terminated, fit
from dlopt.train.callbacks.progress import Progress
from dlopt.train.techniques.freeze import frozen_names


def _blobs(n: int = 200):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    return torch.randn(n, 8, generator=g) + 2.0 * nn.functional.one_hot(y, 8).float(), y


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream_cls", [io.StringIO, _Tty])
def test_progress_reports_loss_metric_and_speed(stream_cls, tmp_path) -> None:
    out = stream_cls()
    fit(_mlp(), _blobs(), run_dir=tmp_path / "r", epochs=2, batch_size=32, progress=False, threads=1,
        callbacks=[Progress(stream=out, metric="val_accuracy", refresh=0.0)])
    text = out.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # a terminal gets colours and redraws
    lines = re.split(r"[\r\n]", plain)
    for k in (1, 2):  # the epoch row, printed once per epoch in both modes
        line = next(ln for ln in lines if ln.startswith(f"epoch {k}/2  step "))
        assert "train_loss " in line and "val_accuracy " in line
        assert "samples/s" in line or stream_cls is _Tty  # rich wraps the row at 80 columns
    if stream_cls is _Tty:  # the live bar shows the running loss and speed
        assert "samples/s" in plain and re.search(r"loss \d\.\d{4}", plain)
    if stream_cls is io.StringIO:  # plain: exactly one line per epoch, no terminal codes
        assert len(text.splitlines()) == 2 and "\x1b[" not in text


def test_frozen_names_by_glob_and_up_to_a_layer() -> None:
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)))
    model.add_module("classifier", nn.Linear(4, 2))
    assert frozen_names(model, ["features.0.*"]) == ["features.0.weight", "features.0.bias"]
    assert frozen_names(model, until="classifier") == [
        "features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias"]
    assert frozen_names(model, until="features.1") == ["features.0.weight", "features.0.bias"]
    with pytest.raises(ConfigError, match="pattern 'head.*' matches no parameter"):
        frozen_names(model, ["head.*"])
    with pytest.raises(ConfigError, match="freeze_until='head': no such layer"):
        frozen_names(model, until="head")


def test_cli_cv_prints_mean_and_std(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: cv\ndata: {name: iris, preprocess: [{op: zscore}]}\nmodel: {name: mlp, width: 16}\n"
                   "train: {epochs: 2, batch_size: 32, progress: false, threads: 1}\n")
    res = CliRunner().invoke(app, ["train", str(cfg), "--run-dir", str(tmp_path / "r"), "--cv", "3"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("test accuracy:"))
    assert " ± " in line and line.endswith("over 3 folds")
    run_line = res.output.splitlines()[-1]
    assert run_line.startswith("run: ") and "best epoch" not in run_line  # no best epoch across folds
    assert all((tmp_path / "r" / f"fold-{k}" / "summary.json").is_file() for k in (1, 2, 3))
    _check_each_fold_fitted_its_own_preprocessing(tmp_path / "r", 3)
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "r")])
    assert res.exit_code == 2 and "is a cross-validation run; load one of its folds: " in res.output
    assert str(tmp_path / "r" / "fold-1") in res.output


def _check_each_fold_fitted_its_own_preprocessing(run: Path, folds: int) -> None:
    """Each fold's zscore statistics are those of its own training rows (no validation row
    seen), and the run's saved preprocessing is the last fold's (the model it returns)."""
    import numpy as np

    from dlopt.config import load_config
    from dlopt.data import Preprocessor, splits_of
    from dlopt.train.cv import fold_indices

    data = load_config(run / "config.yaml").data
    rs = splits_of(data)
    x = np.concatenate([rs.train[0], rs.val[0]]).astype(np.float64)
    y = np.concatenate([rs.train[1], rs.val[1]]).astype(np.int64)
    means = []
    for k, (tr, _) in enumerate(fold_indices(y, folds, seed=data.seed, stratify=True)):
        mean = Preprocessor.load(run / f"fold-{k + 1}").state_dict()["arrays"]["0.mean_"]
        np.testing.assert_allclose(mean, x[tr].mean(0), rtol=1e-6)
        means.append(mean)
    np.testing.assert_array_equal(Preprocessor.load(run).state_dict()["arrays"]["0.mean_"], means[-1])


class _SigtermAt:
    """Sends this process SIGTERM from one hook, as ``kill PID`` would at that moment."""

    def __init__(self, hook: str) -> None:
        setattr(self, hook, lambda state: os.kill(os.getpid(), signal.SIGTERM))


@pytest.mark.parametrize(("hook", "stops"), [("on_fit_end", False), ("on_batch_end", True)])
def test_sigterm_mid_run_stops_it_and_after_the_last_step_is_passed_on(hook, stops, tmp_path) -> None:
    heard: list[int] = []

    def handler(signum, frame) -> None:  # the caller's own handler, as `dlopt tune` installs
        heard.append(signum)

    def run():
        return fit(_mlp(), _blobs(), run_dir=tmp_path / "r", epochs=1, batch_size=32, progress=False,
                   threads=1, callbacks=[_SigtermAt(hook)])

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        if stops:  # mid-run: the loop stops at the step boundary; the caller sees Terminated
            with pytest.raises(Terminated):
                run()
        else:  # the run is over: it finishes, and the caller's handler hears the signal
            assert len(run().history) == 1  # its one epoch, then the test pass after CLOSE
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert heard == ([] if stops else [signal.SIGTERM])


def test_a_cv_run_refused_at_its_first_fold_leaves_nothing(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: cv\ndata: {name: iris}\nmodel: {name: mlp, width: 16}\n"
                   "train: {epochs: 1, progress: false, threads: 1, metric: top5}\n")
    res = CliRunner().invoke(app, ["train", str(cfg), "--run-dir", str(tmp_path / "r"), "--cv", "3"])
    assert res.exit_code == 2 and "train.metric='top5'" in res.output, res.output
    assert not (tmp_path / "r").exists()


def test_tensorboard_keeps_one_point_per_epoch_across_resumes(tmp_path) -> None:
    """6 steps per epoch; max_steps=8 cuts epoch 2, which is closed early (a point at step 8).
    The resume continues that epoch: its early point used to stay beside the real one."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dlopt.train import train_run
    from train_helpers import tiny_config

    run = tmp_path / "r"
    train_run(tiny_config(max_steps=8, tensorboard=True), run_dir=run)
    train_run(tiny_config(tensorboard=True), run_dir=run, resume=True)
    train_run(tiny_config(epochs=3, tensorboard=True), run_dir=run, resume=True)  # from an epoch's end
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    history = fit(config=tiny_config(epochs=3), run_dir=tmp_path / "full").history
    for key in ("train_loss", "val_loss"):
        points = [(e.step, e.value) for e in events.Scalars(key)]
        assert points == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in history], key
