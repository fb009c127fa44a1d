"""A training run's summary figures: ``size_bytes`` is the written ``model.safetensors``
file (as compression measures it), ``train_seconds`` ends when training and its validation
end (the final test pass is ``test_seconds``)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from torch import nn

from train_helpers import tiny_config

SLEEP = 0.5  # seconds every forward sleeps once training ended: the test pass is at least this long


class _Slow(nn.Module):
    """A linear classifier whose forward sleeps once its ``slow`` flag is set (or, with
    ``in_eval``, in every evaluation: validation too)."""

    def __init__(self, *, in_eval: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
        self.slow, self.in_eval = False, in_eval

    def forward(self, x: Any) -> Any:
        if self.slow or (self.in_eval and not self.training):
            time.sleep(SLEEP)
        return self.net(x)


class _FitEnd:
    """Notes the run's clock when fitting ends and slows the model from then on."""

    def __init__(self, module: _Slow) -> None:
        self.module, self.seconds = module, None

    def on_fit_end(self, state: Any) -> None:
        self.seconds = state.elapsed()
        self.module.slow = True


@pytest.fixture(scope="module")
def slow_test_run(tmp_path_factory) -> tuple[dict[str, Any], Any, Any]:
    from dlopt.train import train_run

    module = _Slow()
    clock = _FitEnd(module)
    res = train_run(tiny_config(), run_dir=tmp_path_factory.mktemp("figures") / "run", model=module,
                    callbacks=[clock])
    return res.summary, res.run_dir, clock


def test_train_seconds_end_with_training_and_test_seconds_hold_the_test_pass(slow_test_run):
    summary, _, clock = slow_test_run
    assert summary["test_seconds"] >= SLEEP
    # training ended at clock.seconds; the test pass (>= SLEEP) is not in train_seconds
    assert round(clock.seconds, 3) <= summary["train_seconds"] < clock.seconds + SLEEP


def test_size_bytes_is_the_written_weights_file(slow_test_run):
    summary, run_dir, _ = slow_test_run
    assert summary["size_bytes"] == (run_dir / "model.safetensors").stat().st_size
    assert summary["size_bytes"] != 4 * summary["params"]  # the file has a header too


def test_epoch_samples_per_second_count_training_steps_only(tmp_path):
    """Validation sleeps SLEEP inside each epoch's seconds; the line's samples/s leaves it out."""
    import io
    import re

    from dlopt.train import train_run
    from dlopt.train.callbacks import Progress

    out = io.StringIO()
    res = train_run(tiny_config(), run_dir=tmp_path / "run", model=_Slow(in_eval=True),
                    callbacks=[Progress(stream=out, force_plain=True)])
    rows = [json.loads(ln) for ln in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [float(r.replace(",", "")) for r in re.findall(r"([\d,]+) samples/s", out.getvalue())]
    assert len(rates) == len(rows) == 2
    for rate, row in zip(rates, rows):
        assert res.summary["n_train"] / rate <= row["seconds"] - SLEEP + 0.01


def test_cv_line_names_its_std(tmp_path):
    import statistics

    import yaml
    from typer.testing import CliRunner

    from dlopt.cli import app

    cfg = tmp_path / "cv.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(epochs=1).model_dump(mode="json")))
    res = CliRunner().invoke(app, ["train", str(cfg), "--cv", "2", "--run-dir", str(tmp_path / "cv")])
    assert res.exit_code == 0, res.output
    folds = [json.loads((tmp_path / "cv" / f / "summary.json").read_text())["test"]["accuracy"]
             for f in ("fold-1", "fold-2")]
    line = next(ln for ln in res.output.splitlines() if ln.startswith("test accuracy:"))
    assert line.endswith(f"± {statistics.pstdev(folds):.4f} (population std) over 2 folds")
