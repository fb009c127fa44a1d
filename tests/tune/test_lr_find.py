"""LR range test: the suggestion on known curves (with early spikes) and a real run."""

from __future__ import annotations

import math
import random

import pytest

from dlopt.errors import RunError
from dlopt.tune import suggest_lr


def _curve(spikes=(), seed=0):
    """Flat ~2.3 below 1e-4, best ~0.3 near 1e-2, diverging above 5e-2 (log-spaced lrs)."""
    rng = random.Random(seed)
    lrs = [1e-6 * (1e7) ** (i / 99) for i in range(100)]
    losses = []
    for lr in lrs:
        x = math.log10(lr)
        loss = 0.3 + 2.0 / (1 + math.exp(3 * (x + 3))) + max(0.0, x + 1.3) ** 2 * 8
        losses.append(loss * (1 + 0.05 * rng.gauss(0, 1)))
    for i in spikes:
        losses[i] *= 8
    return lrs, losses


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_suggestion_sits_on_the_falling_slope(seed):
    lr, smoothed = suggest_lr(*_curve(seed=seed))
    assert 1e-3 <= lr <= 1e-2  # learning fast, well before the minimum/divergence
    assert len(smoothed) == 100


@pytest.mark.parametrize("spikes", [(2,), (3, 4), (1, 6)])
def test_early_spikes_do_not_move_the_suggestion(spikes):
    clean, _ = suggest_lr(*_curve())
    spiky, _ = suggest_lr(*_curve(spikes))
    assert clean / 2 <= spiky <= clean * 2


def test_too_short_a_curve_is_refused():
    with pytest.raises(RunError, match="needs >= 5 finite steps"):
        suggest_lr([1e-3, 1e-2], [1.0, 0.5])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_lr": math.inf}, "need 0 < min-lr < max-lr, finite"),
    ({"run_dir": "{file}"}, "cannot create it: File exists"),
])
def test_bad_settings_are_refused_before_the_test_runs(tmp_path, kwargs, message):
    from dlopt.config import RunConfig
    from dlopt.errors import ConfigError
    from dlopt.tune import lr_find

    (tmp_path / "afile").write_text("")
    kwargs = {k: v.format(file=tmp_path / "afile") if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(ConfigError, match=message):  # refused before any data is loaded
        lr_find(RunConfig(), **kwargs)


def test_min_loss_lr_is_never_the_step_that_diverged():
    # 11 MNIST images in one batch: adam drives the loss to ~0, then one step blows it up; the
    # spike filter drops that step's loss and the average still falls there (found by a scan)
    from dlopt.config import RunConfig, parse_config
    from dlopt.tune import lr_find

    cfg = parse_config({"name": "tiny", "data": {"name": "mnist", "subset": 12, "test_subset": 100},
                        "model": {"name": "mlp"},
                        "train": {"seed": 0, "optim": {"name": "adam"}, "batch_size": 12,
                                  "threads": 1, "progress": False}}, RunConfig)
    res = lr_find(cfg, steps=50, min_lr=1e-4, max_lr=10.0)
    assert res.diverged and res.losses[-1] > 4 * min(res.losses)  # stopped by the blow-up
    before = res.smoothed[:-1]
    assert res.min_loss_lr == res.lrs[before.index(min(before))]
    assert res.min_loss_lr < res.lrs[-1]


def test_range_test_minimises_the_class_weighted_loss_training_uses():
    # the same model, batches and rates: only train.loss.class_weights differs, so the curves
    # differ only if the range test builds the weighted loss training will minimise
    from dlopt.config import RunConfig, parse_config
    from dlopt.tune import lr_find

    def curve(mode):
        cfg = parse_config({"name": "cw", "data": {"name": "mnist", "subset": 64, "test_subset": 100},
                            "model": {"name": "mlp"},
                            "train": {"seed": 0, "batch_size": 32, "threads": 1, "progress": False,
                                      "loss": {"class_weights": mode}}}, RunConfig)
        return lr_find(cfg, steps=6, min_lr=1e-6, max_lr=1e-5).losses

    plain, weighted = curve("none"), curve("balanced")
    assert len(plain) == len(weighted) == 6
    assert all(abs(a - b) > 1e-4 for a, b in zip(plain, weighted))


def test_a_loss_that_blows_up_names_the_rate_of_the_step_that_diverged(tmp_path):
    # SGD at rates growing 37x a step: the 6th step's loss overflows (found by a scan); that
    # step is not in the curve, so the curve's last rate is the step before it
    import json

    import yaml
    from typer.testing import CliRunner

    from dlopt.cli import app

    config = tmp_path / "t.yaml"
    config.write_text(yaml.safe_dump({
        "name": "blowup", "data": {"name": "mnist", "subset": 12, "test_subset": 100},
        "model": {"name": "mlp"},
        "train": {"seed": 0, "optim": {"name": "sgd"}, "batch_size": 12, "threads": 1,
                  "progress": False}}))
    out = tmp_path / "lr"
    res = CliRunner().invoke(app, ["lr-find", str(config), "--run-dir", str(out), "--steps", "8",
                                   "--min-lr", "0.1", "--max-lr", "1e10"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "lr_find.json").read_text())
    gamma = (1e10 / 0.1) ** (1 / 7)
    assert doc["diverged"] and len(doc["lrs"]) < 8
    assert doc["diverged_lr"] == pytest.approx(doc["lrs"][-1] * gamma)  # the step after the curve
    assert f"{len(doc['lrs'])} steps (diverged at lr {doc['diverged_lr']:.2e})" in res.output
