"""Randomness and gradient accumulation under DDP (2 gloo processes on CPU): each rank draws
its own dropout masks, augmentation noise and mixup ``lam`` (rank 0 the one-process stream),
a stopped and resumed run ends bitwise equal to a straight one, and accumulation all-reduces
once per optimizer step."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from dlopt.train import checkpoint as io
from ddp_fit import DROPOUT, MIXUP_ALPHA, RECIPE, fit
from scale_helpers import assert_close_weights, torchrun_fit


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    """2 processes, dropout + mixup + noise augmentation, 2 epochs straight: the output dir."""
    out = tmp_path_factory.mktemp("noisy")
    torchrun_fit(out, out / "run", noisy=True)
    return out


def _weights(out, rank: int) -> dict[str, torch.Tensor]:
    return load_file(str(out / f"rank{rank}.safetensors"))


def test_each_rank_draws_its_own_noise(noisy_run):
    d0, d1 = (torch.load(noisy_run / f"draws{r}.pt") for r in (0, 1))
    assert d0["mask"].shape == d1["mask"].shape == (32, 16)  # the global batch of 64 split in two
    assert not torch.equal(d0["mask"], d1["mask"]), "both ranks drew the same dropout mask"
    assert d0["lam"] != d1["lam"], "both ranks drew the same mixup lam"
    assert d0["lam"] == random.Random(RECIPE["seed"]).betavariate(MIXUP_ALPHA, MIXUP_ALPHA)  # rank 0: as one process
    w0, w1 = _weights(noisy_run, 0), _weights(noisy_run, 1)
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "ranks diverged"


def test_stopped_and_resumed_run_is_bitwise_the_straight_run(noisy_run, tmp_path):
    torchrun_fit(tmp_path / "a", tmp_path / "run", noisy=True, max_steps=4)  # stops inside epoch 1
    saved = io.read_checkpoint(tmp_path / "run").state["rank_rng"]
    assert len(saved) == 2 and not torch.equal(saved[0]["rng"]["torch"], saved[1]["rng"]["torch"])
    torchrun_fit(tmp_path / "b", tmp_path / "run", noisy=True, resume=True)
    for rank in (0, 1):
        straight, resumed = _weights(noisy_run, rank), _weights(tmp_path / "b", rank)
        assert all(torch.equal(straight[k], resumed[k]) for k in straight), f"rank {rank} differs"


def test_one_process_draws_as_before(tmp_path):
    """One process: seeded once, model built, then trained on that stream (no per-rank
    reseed); its checkpoints hold exactly what they held before."""
    fit(tmp_path / "run", tmp_path, noisy=True, augment=False, epochs=1)
    torch.manual_seed(RECIPE["seed"])
    expected = torch.nn.functional.dropout(torch.ones(RECIPE["batch_size"], 16), DROPOUT) == 0
    draws = torch.load(tmp_path / "draws0.pt")
    assert torch.equal(draws["mask"], expected)
    assert draws["lam"] == random.Random(RECIPE["seed"]).betavariate(MIXUP_ALPHA, MIXUP_ALPHA)
    assert set(io.read_checkpoint(tmp_path / "run").state) == {"optimizer", "rng", "loader", "counters", "handlers"}


def test_one_process_checkpoint_resumes_in_two_with_own_streams(tmp_path):
    """A checkpoint without per-rank states (one process, or written before they existed):
    rank 1 reseeds from (seed, rank, step) instead of repeating rank 0's draws."""
    fit(tmp_path / "run", tmp_path / "a", noisy=True, epochs=1)
    err = torchrun_fit(tmp_path / "b", tmp_path / "run", noisy=True, resume=True)
    assert "holds the random state of 1 process(es), this run has 2" in err
    d0, d1 = (torch.load(tmp_path / "b" / f"draws{r}.pt") for r in (0, 1))
    assert not torch.equal(d0["mask"], d1["mask"]) and d0["lam"] != d1["lam"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["epochs"] == 2


def test_grad_accum_all_reduces_once_per_step(tmp_path):
    """3 micro-batches per step: one all-reduce per step instead of one per micro-batch, and
    the weights of one process accumulating the same batches."""
    torchrun_fit(tmp_path / "ddp", tmp_path / "run", count_allreduce=True, grad_accum=3)
    calls = [json.loads((tmp_path / "ddp" / f"allreduce{r}.json").read_text())["calls"] for r in (0, 1)]
    steps = json.loads((tmp_path / "run" / "summary.json").read_text())["steps"]
    assert steps == 6 and calls == [steps, steps]  # 2 epochs x 9 micro-batches / 3; the MLP is one bucket
    single = tmp_path / "single"
    fit(single / "run", single, grad_accum=3)
    assert_close_weights(_weights(tmp_path / "ddp", 0), _weights(single, 0))
