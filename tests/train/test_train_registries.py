"""Registries: schedules match torch's schedulers step for step, losses match torch's
functional losses, metrics match scikit-learn, parameter groups, names are checked."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.optim import lr_scheduler as tls

from dlopt.config import parse_config
from dlopt.errors import ConfigError
from dlopt.train.losses import LOSSES, balanced_class_weights, create_loss
from dlopt.train.metrics import METRICS, best_mode, compute_metrics
from dlopt.train.optim import OPTIMIZERS, create_optimizer, param_groups
from dlopt.train.schedules import SCHEDULES, create_schedule, plateau_decision

SPE, EPOCHS, BASE = 3, 4, 0.1  # steps per epoch, epochs, base lr


def _opt(lr: float = BASE) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _ours(name: str, **kw) -> list[float]:
    """Our lr before each optimizer step of the run."""
    opt = _opt()
    s = create_schedule(name, opt, steps_per_epoch=SPE, epochs=EPOCHS, base_lr=BASE, **kw)
    lrs = []
    for _ in range(SPE * EPOCHS):
        lrs.append(opt.param_groups[0]["lr"])
        s.step()
    return lrs


def _torch_per_epoch(make) -> list[float]:
    opt = _opt()
    sched = make(opt)
    lrs = []
    for _ in range(EPOCHS):
        lrs += [opt.param_groups[0]["lr"]] * SPE
        opt.step()
        sched.step()
    return lrs


def _torch_per_step(make) -> list[float]:
    opt = _opt()
    sched = make(opt)
    lrs = []
    for _ in range(SPE * EPOCHS):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


T = SPE * EPOCHS
MATCHES = {
    "step": (dict(step_size=2, gamma=0.5), lambda: _torch_per_epoch(lambda o: tls.StepLR(o, 2, 0.5))),
    "multistep": (dict(milestones=[1, 3], gamma=0.3),
                  lambda: _torch_per_epoch(lambda o: tls.MultiStepLR(o, [1, 3], 0.3))),
    "exponential": (dict(gamma=0.7), lambda: _torch_per_epoch(lambda o: tls.ExponentialLR(o, 0.7))),
    "polynomial": (dict(power=2.0), lambda: _torch_per_step(lambda o: tls.PolynomialLR(o, T, 2.0))),
    "cosine": (dict(min_lr=1e-3), lambda: _torch_per_step(lambda o: tls.CosineAnnealingLR(o, T, 1e-3))),
    "one-cycle": (dict(pct_start=0.3, div_factor=10, final_div_factor=100),
                  lambda: _torch_per_step(lambda o: tls.OneCycleLR(
                      o, BASE, total_steps=T, pct_start=0.3, div_factor=10, final_div_factor=100,
                      cycle_momentum=False))),
    "constant": ({}, lambda: [BASE] * T),
}


@pytest.mark.parametrize("name", list(MATCHES))
def test_schedule_matches_torch(name: str) -> None:
    kw, reference = MATCHES[name]
    np.testing.assert_allclose(_ours(name, **kw), reference(), rtol=1e-9, atol=1e-12)


def test_every_registered_schedule_is_covered() -> None:
    assert set(SCHEDULES.names()) == set(MATCHES) | {"plateau"}


def test_warmup_ramps_linearly_then_hands_over() -> None:
    lrs = _ours("step", warmup_epochs=1, step_size=1, gamma=0.5)
    np.testing.assert_allclose(lrs[:SPE], [BASE * (i + 1) / SPE for i in range(SPE)])
    # after warm-up the schedule's own clock starts at 0: full lr for one epoch, then halved
    np.testing.assert_allclose(lrs[SPE:2 * SPE], [BASE] * SPE)
    np.testing.assert_allclose(lrs[2 * SPE:3 * SPE], [BASE / 2] * SPE)


@pytest.mark.parametrize("name", ["cosine", "polynomial"])
def test_a_min_lr_above_the_peak_lr_is_refused_not_clipped(name: str) -> None:
    # it was clipped to the peak: the decaying schedule silently ran at a constant lr
    with pytest.raises(ConfigError, match=r"min_lr=0.5 is above the peak lr 0.1 .*allowed: min_lr <= lr"):
        create_schedule(name, _opt(), steps_per_epoch=SPE, epochs=EPOCHS, min_lr=0.5, base_lr=BASE)
    lrs = _ours(name, min_lr=BASE)  # the edge still runs (at the peak throughout)
    assert lrs == pytest.approx([BASE] * T)


def test_plateau_matches_torch_reduce_on_plateau() -> None:
    values = [1.0, 0.9, 0.95, 0.97, 0.96, 0.5, 0.6, 0.7]
    opt_t = _opt()
    ref = tls.ReduceLROnPlateau(opt_t, mode="min", factor=0.5, patience=1)
    opt_o = _opt()
    ours = create_schedule("plateau", opt_o, steps_per_epoch=SPE, epochs=len(values), patience=1, factor=0.5,
                           base_lr=BASE)
    for v in values:
        ref.step(v)
        ours.epoch_end(v)
        assert opt_o.param_groups[0]["lr"] == pytest.approx(opt_t.param_groups[0]["lr"])


def test_plateau_decision_is_pure() -> None:
    assert plateau_decision(1.0, best=None, bad_epochs=0, patience=0, mode="min") == (1.0, 0, False)
    assert plateau_decision(2.0, best=1.0, bad_epochs=0, patience=0, mode="min") == (1.0, 0, True)
    assert plateau_decision(2.0, best=1.0, bad_epochs=0, patience=0, mode="max") == (2.0, 0, False)


def test_schedule_state_round_trip() -> None:
    opt = _opt()
    s = create_schedule("cosine", opt, steps_per_epoch=SPE, epochs=EPOCHS, warmup_epochs=1)
    for _ in range(5):
        s.step()
    opt2 = _opt()
    s2 = create_schedule("cosine", opt2, steps_per_epoch=SPE, epochs=EPOCHS, warmup_epochs=1)
    s2.load_state_dict(s.state_dict())
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


# ------------------------------------------------------------------------------- losses
LOGITS = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
LABELS = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])


def test_losses_match_torch_functional() -> None:
    onehot = F.one_hot(LABELS, 4).float()
    ref = {
        "cross_entropy": F.cross_entropy(LOGITS, LABELS),
        "nll": F.nll_loss(F.log_softmax(LOGITS, 1), LABELS),
        "bce": F.binary_cross_entropy_with_logits(LOGITS, onehot),
        "mse": F.mse_loss(LOGITS, onehot),
        "mae": F.l1_loss(LOGITS, onehot),
        "huber": F.huber_loss(LOGITS, onehot),
        "hinge": F.multi_margin_loss(LOGITS, LABELS),
    }
    assert set(ref) == set(LOSSES.names())
    for name, value in ref.items():
        task = LOSSES.get(name).info["task"]
        assert torch.allclose(create_loss(name, task=task)(LOGITS, LABELS), value), name


def test_label_smoothing_in_nll_equals_cross_entropy_smoothing() -> None:
    ours = create_loss("nll", task="classification", label_smoothing=0.1)(LOGITS, LABELS)
    assert torch.allclose(ours, F.cross_entropy(LOGITS, LABELS, label_smoothing=0.1))


@pytest.mark.parametrize("name, option, key", [
    ("hinge", {"label_smoothing": 0.1}, "label_smoothing"), ("mse", {"label_smoothing": 0.1}, "label_smoothing"),
    ("bce", {"weight": torch.ones(4)}, "class_weights"), ("huber", {"weight": torch.ones(4)}, "class_weights"),
])
def test_a_loss_setting_the_loss_does_not_apply_is_refused(name, option, key) -> None:
    from dlopt.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"train.loss.{key}: loss '{name}' does not apply it; allowed with: "):
        create_loss(name, task="classification", **option)
    create_loss("cross_entropy", task="classification", **option)  # it applies both


def test_regression_loss_takes_flat_targets() -> None:
    out, y = torch.randn(5, 1), torch.randn(5)
    assert torch.allclose(create_loss("auto", task="regression")(out, y), F.mse_loss(out[:, 0], y))


def test_balanced_class_weights_match_sklearn() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    y = torch.tensor([0, 0, 0, 1, 2, 2])
    ref = compute_class_weight("balanced", classes=np.arange(3), y=y.numpy())
    np.testing.assert_allclose(balanced_class_weights(y, 3).numpy(), ref, rtol=1e-6)


# ------------------------------------------------------------------------------ metrics
def test_metrics_match_sklearn() -> None:
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    logits = torch.from_numpy(rng.normal(size=(200, 4)) + np.eye(4)[y] * 1.5).float()
    m = compute_metrics(logits, torch.from_numpy(y), task="classification",
                        names=["accuracy", "f1_macro", "precision_macro", "recall_macro", "auc", "top5"])
    p = torch.softmax(logits, 1).numpy()
    pred = p.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["precision_macro"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert m["recall_macro"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"))
    assert m["top5"] == 1.0  # only 4 classes

    yr = rng.normal(size=50)
    out = torch.from_numpy(yr + rng.normal(scale=0.3, size=50)).float()[:, None]
    r = compute_metrics(out, torch.from_numpy(yr).float(), task="regression")
    assert r["r2"] == pytest.approx(skm.r2_score(yr, out[:, 0].numpy()), rel=1e-5)
    assert r["mae"] == pytest.approx(skm.mean_absolute_error(yr, out[:, 0].numpy()), rel=1e-5)


def test_binary_auc_from_single_logit() -> None:
    y = torch.tensor([0, 0, 1, 1])
    out = torch.tensor([[-2.0], [-1.0], [1.0], [0.5]])
    assert compute_metrics(out, y, task="classification", names=["auc"])["auc"] == 1.0


def test_nan_outputs_give_nan_metrics_not_errors() -> None:
    m = compute_metrics(torch.full((4, 3), float("nan")), torch.tensor([0, 1, 2, 0]), task="classification")
    assert all(math.isnan(v) for v in m.values())


def test_best_mode() -> None:
    assert best_mode("val_loss") == "min" and best_mode("val_accuracy") == "max"
    assert best_mode("val_mae") == "min" and best_mode("r2") == "max"
    assert {e.info["mode"] for e in METRICS} == {"min", "max"}


# ----------------------------------------------------------------------------- optimizers
def test_param_groups_skip_decay_on_norm_and_bias_and_scale_lr() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    groups = param_groups(model.named_parameters(), lr=0.1, weight_decay=0.01, layer_lr={"2.*": 0.5})
    by_name = {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["names"]}
    assert by_name["0.weight"] == (0.1, 0.01)
    assert by_name["0.bias"] == (0.1, 0.0) and by_name["1.weight"] == (0.1, 0.0)
    assert by_name["2.weight"] == (0.05, 0.01) and by_name["2.bias"] == (0.05, 0.0)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_steps(name: str) -> None:
    model = torch.nn.Linear(3, 1)
    opt = create_optimizer(name, model, lr=0.01, weight_decay=0.01)
    before = model.weight.detach().clone()
    model(torch.ones(2, 3)).sum().backward()
    opt.step()
    assert not torch.equal(before, model.weight)


def test_unknown_names_list_the_valid_ones() -> None:
    for section, key in (("optim", "name"), ("schedule", "name"), ("loss", "name")):
        with pytest.raises(ConfigError, match="valid:"):
            parse_config({"train": {section: {key: "nope"}}})


def test_registries_do_not_import_torch() -> None:
    code = ("import sys; import dlopt.train.optim, dlopt.train.schedules, dlopt.train.losses; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_rank_auc_matches_sklearn_with_ties(classes: int) -> None:
    from sklearn.metrics import roc_auc_score

    from dlopt.train.metrics import auc

    rng = np.random.default_rng(classes)
    y = np.arange(300) % classes
    z = np.round(rng.normal(size=(300, classes)) + np.eye(classes)[y])  # many tied scores
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    ref = roc_auc_score(y, p[:, 1]) if classes == 2 else roc_auc_score(y, p, multi_class="ovr")
    assert auc(y, p) == pytest.approx(ref, abs=1e-12)
