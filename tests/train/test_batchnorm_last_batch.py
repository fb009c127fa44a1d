"""A BatchNorm model never gets a training batch of one sample: the loader leaves that trailing
batch out, and the count of batches per epoch (schedules, max_steps, resume) says so."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from dlopt.data import Split, make_loader
from dlopt.data.loader import min_batch_for
from dlopt.errors import ConfigError
from dlopt.train import Hooks, State, run
from dlopt.train.schedules import create_schedule


def _bn_net() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def _split(n: int) -> Split:
    g = torch.Generator().manual_seed(0)
    return Split(torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_min_batch_is_two_only_with_batchnorm() -> None:
    assert min_batch_for(_bn_net()) == 2
    assert min_batch_for(nn.Sequential(nn.Linear(8, 3), nn.LayerNorm(3))) == 1


@pytest.mark.parametrize("kind", ["memory", "dataloader"])
def test_a_trailing_batch_of_one_is_left_out_on_every_rank(kind: str, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="dlopt.data.loader"):
        ranks = [make_loader(_split(433), batch_size=215, shuffle=True, seed=1, rank=r, world_size=2,
                             loader=kind, min_batch=2) for r in range(2)]
    assert caplog.text.count("left out") == 2  # once per loader: once per run on each rank
    seen = []
    for loader in ranks:
        assert len(loader) == 1  # 216 samples per rank: one batch of 215, the lone one dropped
        sizes = [[len(y) for _, y in loader] for _ in range(2)]
        assert sizes == [[215], [215]]
        seen.append(loader.indices(0)[:215])
    assert not set(seen[0].tolist()) & set(seen[1].tolist())  # the ranks' slices stay disjoint
    plain = make_loader(_split(216), batch_size=215, shuffle=True)
    assert [len(y) for _, y in plain] == [215, 1]  # models without BatchNorm keep every sample


def test_a_batchnorm_model_trains_when_the_last_batch_would_hold_one_sample() -> None:
    torch.manual_seed(0)
    model = _bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = make_loader(_split(33), batch_size=32, shuffle=True, min_batch=min_batch_for(model))
    schedule = create_schedule("cosine", opt, steps_per_epoch=len(loader), epochs=2, base_lr=0.1)
    state = State(module=model, optimizer=opt, loss_fn=nn.functional.cross_entropy, loader=loader,
                  device=torch.device("cpu"), epochs=2, schedule=schedule, handlers=[schedule])
    run(state, Hooks([schedule]))
    assert (state.step, state.samples_seen) == (2, 64)
    assert torch.isfinite(model[1].running_mean).all()


@pytest.mark.parametrize("n,batch,message", [
    (100, 1, "train.batch_size=1: a model with BatchNorm1d needs at least 2"),
    (1, 32, "1 training sample(s): a model with BatchNorm1d needs at least 2"),
])
def test_batches_that_are_all_too_small_are_refused(n: int, batch: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_loader(_split(n), batch_size=batch, shuffle=True, min_batch=2)


def test_only_batchnorm1d_needs_two_samples() -> None:
    image_net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    assert (min_batch_for(_bn_net()), min_batch_for(image_net), min_batch_for(nn.Linear(2, 2))) == (2, 1, 1)
    image_net.train()(torch.randn(1, 1, 5, 5))  # one image still has 9 positions per channel


def test_fit_trains_a_batchnorm1d_model_whose_last_batch_would_hold_one_sample(tmp_path) -> None:
    import dlopt

    split = _split(33)
    res = dlopt.fit(_bn_net(), (split.x.numpy(), split.y.numpy()), epochs=1, batch_size=32,
                    val_fraction=0, run_dir=tmp_path / "run", progress=False)
    assert res.summary["steps"] == 1  # the batch of 32; the 33rd sample waits for the next shuffle
