"""The loop: event order, the callback contract, grad accumulation, max_steps, errors from
callbacks propagate after cleanup."""

from __future__ import annotations

import pytest
import torch

from dlopt.train import Event, Hooks, State, run, train_run

from train_helpers import Recorder, tiny_config


def test_events_fire_in_the_documented_order(tmp_path) -> None:
    rec = Recorder()
    train_run(tiny_config(epochs=1, max_steps=2), run_dir=tmp_path / "r", callbacks=[rec])
    batch = ["batch_start", "after_forward", "after_loss", "before_backward", "after_backward",
             "before_optimizer_step", "after_optimizer_step", "batch_end"]
    assert rec.events == ["fit_start", "epoch_start", *batch, *batch, "epoch_end", "fit_end", "close"]


class _Contract:
    """What the tuner relies on: 1-based completed epoch, val metrics, the model."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, set[str]]] = []

    def on_epoch_end(self, state) -> None:
        assert isinstance(state.model, torch.nn.Module)
        self.seen.append((state.epoch, set(state.metrics)))


def test_callback_contract(tmp_path) -> None:
    c = _Contract()
    train_run(tiny_config(), run_dir=tmp_path / "r", callbacks=[c])
    assert [e for e, _ in c.seen] == [1, 2]
    assert {"val_loss", "val_accuracy", "val_f1_macro", "val_auc"} <= c.seen[0][1]


class _Boom(Exception):
    pass


class _Raiser:
    def __init__(self) -> None:
        self.closed = False

    def on_epoch_end(self, state) -> None:
        raise _Boom("pruned")

    def on_close(self, state) -> None:
        self.closed = True


def test_callback_exception_propagates_after_cleanup(tmp_path) -> None:
    r = _Raiser()
    with pytest.raises(_Boom):
        train_run(tiny_config(), run_dir=tmp_path / "r", callbacks=[r])
    assert r.closed


def test_max_steps_stops_mid_epoch(tmp_path) -> None:
    res = train_run(tiny_config(epochs=3, max_steps=4), run_dir=tmp_path / "r")
    assert res.summary["steps"] == 4 and res.summary["stop_reason"] == "max_steps"
    assert len(res.history) == 1


def test_hooks_resolve_once_and_skip_absent_events() -> None:
    rec = Recorder()

    class OnlyEnd:
        order = -1

        def on_epoch_end(self, state) -> None:
            pass

    hooks = Hooks([rec, OnlyEnd()])
    assert len(hooks[Event.EPOCH_END]) == 2 and hooks[Event.EPOCH_END][0].__self__.__class__ is OnlyEnd
    assert Hooks([])[Event.BATCH_START] == ()


def test_grad_accumulation_matches_one_big_batch() -> None:
    """Two micro-batches of 4 with accumulation give the same SGD step as one batch of 8."""
    from dlopt.data import make_loader
    from dlopt.data._types import Split
    from dlopt.train.techniques import GradAccumulation

    torch.manual_seed(0)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))

    def one_step(batch: int, handlers) -> torch.Tensor:
        torch.manual_seed(1)
        model = torch.nn.Linear(5, 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        loader = make_loader(Split(x, y), batch_size=batch, shuffle=False)
        state = State(module=model, optimizer=opt, loss_fn=torch.nn.functional.cross_entropy,
                      loader=loader, device=torch.device("cpu"), epochs=1, handlers=handlers)
        run(state, Hooks(handlers))
        assert state.step == 1
        return model.weight.detach()

    big = one_step(8, [])
    accumulated = one_step(4, [GradAccumulation(2)])
    assert torch.allclose(big, accumulated, atol=1e-6)


def test_epoch_rows_hold_train_loss_lr_and_seconds(tmp_path) -> None:
    res = train_run(tiny_config(), run_dir=tmp_path / "r")
    row = res.history[0]
    assert {"epoch", "step", "train_loss", "val_loss", "lr", "seconds"} <= set(row)
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
