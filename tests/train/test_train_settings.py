"""The settings table: every optimizer, schedule, loss, regularizer, precision mode and
callback goes through the same contract.

Each setting trains a small LeNet-5 on a real MNIST slice twice: once straight through, once
crashing after step 9 (of 12; a checkpoint is written every 7 steps, i.e. mid-epoch) and
resuming from the last checkpoint. It must train
(finite loss, a real summary), resume bitwise (``torch.equal`` weights, same history) and
write a loadable run.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import pytest

from dlopt.train import load, train_run
from dlopt.train.techniques import Compile

from train_helpers import Crash, StopAt, assert_same_weights, tiny_config, weights

OPTIMIZERS = {
    name: {"optim": {"name": name, "lr": lr}}
    for name, lr in [("sgd", 0.05), ("momentum", 0.02), ("nesterov", 0.02), ("adagrad", 0.02),
                     ("adadelta", 1.0), ("rmsprop", 1e-3), ("adam", 2e-3), ("adamw", 2e-3),
                     ("adamax", 2e-3), ("nadam", 2e-3), ("radam", 2e-3)]
}
SCHEDULES = {
    "constant": {"schedule": {"name": "constant"}},
    "step": {"schedule": {"name": "step", "step_size": 1, "gamma": 0.5}},
    "multistep": {"schedule": {"name": "multistep", "milestones": [1], "gamma": 0.3}},
    "exponential": {"schedule": {"name": "exponential", "gamma": 0.7}},
    "polynomial": {"schedule": {"name": "polynomial", "power": 2.0}},
    "cosine": {"schedule": {"name": "cosine", "min_lr": 1e-5}},
    "one-cycle": {"schedule": {"name": "one-cycle", "pct_start": 0.3}},
    "plateau": {"schedule": {"name": "plateau", "patience": 0, "factor": 0.5}},
    "warmup+step": {"schedule": {"name": "step", "warmup_epochs": 0.5}},
}
LOSSES = {name: {"loss": {"name": name}} for name in
          ["cross_entropy", "nll", "bce", "mse", "mae", "huber", "hinge"]}
REGULARIZERS = {
    "weight_decay": {"optim": {"name": "adamw", "weight_decay": 0.05}},
    "l1": {"regularization": {"l1": 1e-4}},
    "dropout": {"model": {"name": "lenet5", "width": 0.5, "dropout": 0.3}},
    "label_smoothing": {"loss": {"label_smoothing": 0.1}},
    "mixup": {"regularization": {"mixup_alpha": 0.4}},
    "cutmix": {"regularization": {"cutmix_alpha": 1.0}},
    "clip_norm": {"regularization": {"clip_norm": 0.5}},
    "clip_value": {"regularization": {"clip_value": 0.01}},
    "grad_accum": {"regularization": {"grad_accum": 2}},
    "ema": {"regularization": {"ema_decay": 0.9}},
    "class_weights": {"loss": {"class_weights": "balanced"}},
    "layer_lr": {"optim": {"layer_lr": {"classifier.*": 0.1}}},
    "augment": {"data": {"augment": [{"op": "rotate", "degrees": 10, "p": 0.5}]}},
}
PRECISION = {
    "fp32": {"precision": "fp32"},
    "bf16": {"precision": "bf16"},
    "fp16": {"precision": "fp16"},
    "auto": {"precision": "auto"},
    "channels_last": {"channels_last": True, "precision": "bf16"},
    "compile": {"_callbacks": lambda: [Compile(backend="eager")]},
}
CALLBACKS = {
    "early_stopping": {"early_stopping": {"enabled": True, "monitor": "val_loss", "patience": 1}},
    "checkpoint_every_steps": {"checkpoint": {"every_steps": 2, "keep_best": True}},
    "progress": {"progress": True},
    "nonfinite_skip": {"nonfinite": "skip"},
    **({"tensorboard": {"tensorboard": True}} if importlib.util.find_spec("tensorboard") else {}),
}
TABLE = {f"{group}:{k}": v for group, entries in [
    ("optim", OPTIMIZERS), ("schedule", SCHEDULES), ("loss", LOSSES), ("reg", REGULARIZERS),
    ("precision", PRECISION), ("callback", CALLBACKS)] for k, v in entries.items()}


def _config(setting: dict[str, Any]) -> tuple[Any, list[Any]]:
    setting = dict(setting)
    callbacks = setting.pop("_callbacks", lambda: [])
    data, model = setting.pop("data", None), setting.pop("model", None)
    setting.setdefault("checkpoint", {"every_steps": 7})
    return tiny_config(data=data, model=model, **setting), callbacks


def _history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.parametrize("name", list(TABLE))
def test_setting_trains_and_resumes_bitwise(name: str, tmp_path) -> None:
    cfg, callbacks = _config(TABLE[name])
    full = train_run(cfg, run_dir=tmp_path / "full", callbacks=callbacks())
    assert all(math.isfinite(r["train_loss"]) for r in full.history)
    assert full.summary["steps"] > 0 and full.summary["test"]

    crash_at = 9 // cfg.train.regularization.grad_accum
    with pytest.raises(Crash):
        train_run(cfg, run_dir=tmp_path / "resumed", callbacks=[*callbacks(), StopAt(crash_at)])
    resumed = train_run(cfg, run_dir=tmp_path / "resumed", callbacks=callbacks(), resume=True)

    assert_same_weights(weights(full.run_dir), weights(resumed.run_dir))
    assert _history(full.history) == _history(resumed.history)
    assert full.summary["test"] == resumed.summary["test"]
    loaded = load(resumed.run_dir)
    assert set(loaded.evaluate()) >= {"accuracy", "f1_macro", "auc"}
    if cfg.train.tensorboard:  # both sessions logged beside metrics.jsonl
        assert len(list((resumed.run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2


def _budget(cfg: Any, max_steps: int) -> Any:
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_steps": max_steps})})


def _per_step_schedule(cfg: Any) -> bool:
    from dlopt.train.schedules import SCHEDULES

    return SCHEDULES.get(cfg.train.schedule.name).info["interval"] == "step"


@pytest.mark.parametrize("name", list(TABLE))
def test_setting_cut_by_max_steps_goes_on_exactly_when_the_budget_is_raised(name: str, tmp_path) -> None:
    """max_steps ending a run inside epoch 2 then ``--resume`` with a raised max_steps must end
    as the run with that budget from the start (per-step schedules excepted: their curve
    depends on the budget, so the two runs differ before the cut)."""
    cfg, callbacks = _config(TABLE[name])
    if _per_step_schedule(cfg):
        pytest.skip("a per-step schedule is recomputed over the new budget")
    full = train_run(_budget(cfg, 12), run_dir=tmp_path / "full", callbacks=callbacks())
    train_run(_budget(cfg, 9 // cfg.train.regularization.grad_accum), run_dir=tmp_path / "cut", callbacks=callbacks())
    raised = train_run(_budget(cfg, 12), run_dir=tmp_path / "cut", callbacks=callbacks(), resume=True)
    assert_same_weights(weights(full.run_dir), weights(raised.run_dir))
    assert _history(full.history) == _history(raised.history)
    assert full.summary["test"] == raised.summary["test"]


def test_auto_precision_on_cpu_is_bf16_only_with_native_bf16() -> None:
    """``auto`` must not pick oneDNN's emulated bf16 (plain AVX-512): measured slower than fp32."""
    import torch

    from dlopt.train.techniques import resolve_precision

    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    expected = "bf16" if native and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"


def test_more_threads_than_cpus_is_a_warning_and_restored(caplog) -> None:
    import logging

    import torch

    from dlopt.train.device import environment, usable_cpus

    before = torch.get_num_threads()
    with caplog.at_level(logging.WARNING, logger="dlopt.train.device"):
        with environment(threads=usable_cpus()):
            pass
        assert not caplog.records
        with environment(threads=usable_cpus() + 1):
            assert torch.get_num_threads() == usable_cpus() + 1
    assert torch.get_num_threads() == before
    (record,) = caplog.records
    assert f"more than the {usable_cpus()} CPUs" in record.getMessage()
