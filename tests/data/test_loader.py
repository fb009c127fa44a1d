"""Loaders: every sample once per epoch, seeded order, exact resume, sharding, DataLoader path."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from dlopt.data import Split, make_loader
from dlopt.data.loader import DataLoaderWrapper, InMemoryLoader
from dlopt.errors import ConfigError


def _split(n: int = 103) -> Split:
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)
    return Split(x, torch.arange(n))


def _ids(loader) -> list[int]:
    return [int(i) for _, y in loader for i in y]


class _Squares(Dataset):
    """A map-style dataset that is not a Split."""

    def __len__(self) -> int:
        return 50

    def __getitem__(self, i: int):
        return torch.tensor([float(i * i)]), i


@pytest.mark.parametrize("kind", ["memory", "dataloader"])
def test_every_sample_once_per_epoch_and_new_order_each_epoch(kind):
    loader = make_loader(_split(), batch_size=10, shuffle=True, seed=0, loader=kind)
    assert len(loader) == 11
    first, second = _ids(loader), _ids(loader)
    assert sorted(first) == list(range(103)) and sorted(second) == list(range(103))
    assert first != second and loader.state_dict()["epoch"] == 2


@pytest.mark.parametrize("kind", ["memory", "dataloader"])
def test_seeded_order_is_reproducible(kind):
    a = _ids(make_loader(_split(), batch_size=16, shuffle=True, seed=5, loader=kind))
    b = _ids(make_loader(_split(), batch_size=16, shuffle=True, seed=5, loader=kind))
    c = _ids(make_loader(_split(), batch_size=16, shuffle=True, seed=6, loader=kind))
    assert a == b and a != c


def test_memory_and_dataloader_paths_agree():
    a = _ids(make_loader(_split(), batch_size=8, shuffle=True, seed=3))
    b = _ids(make_loader(_split(), batch_size=8, shuffle=True, seed=3, loader="dataloader"))
    assert a == b


@pytest.mark.parametrize("kind", ["memory", "dataloader"])
def test_resume_mid_epoch_gives_the_same_remaining_batches(kind):
    ref = make_loader(_split(), batch_size=10, shuffle=True, seed=1, loader=kind)
    _ids(ref)  # epoch 0
    ref_batches = [y.tolist() for _, y in ref]  # epoch 1

    run = make_loader(_split(), batch_size=10, shuffle=True, seed=1, loader=kind)
    _ids(run)
    it = iter(run)
    for _ in range(4):
        next(it)
    state = run.state_dict()
    assert state == {"epoch": 1, "position": 4, "seed": 1}

    fresh = make_loader(_split(), batch_size=10, shuffle=True, seed=1, loader=kind)
    fresh.load_state_dict(state)
    fresh.set_epoch(1)  # same epoch: keeps the position
    assert [y.tolist() for _, y in fresh] == ref_batches[4:]
    assert fresh.state_dict() == {"epoch": 2, "position": 0, "seed": 1}


def test_set_epoch_selects_permutation():
    a = make_loader(_split(), batch_size=7, shuffle=True, seed=0)
    b = make_loader(_split(), batch_size=7, shuffle=True, seed=0)
    _ids(a), _ids(a)
    b.set_epoch(2)
    assert _ids(a) == _ids(b)


def test_no_shuffle_is_in_order_and_drop_last():
    loader = make_loader(_split(), batch_size=10, shuffle=False, drop_last=True)
    assert len(loader) == 10 and _ids(loader) == list(range(100))
    x, y = next(iter(loader))
    assert x.shape == (10, 3) and x.dtype == torch.float32 and y.dtype == torch.int64


@pytest.mark.parametrize("kind", ["memory", "dataloader"])
def test_ranks_take_disjoint_slices_of_the_same_permutation(kind):
    shards = [
        make_loader(_split(), batch_size=8, shuffle=True, seed=2, rank=r, world_size=3, loader=kind)
        for r in range(3)
    ]
    ids = [_ids(s) for s in shards]
    assert len({len(i) for i in ids}) == 1 and len(ids[0]) == 34  # 103 // 3
    union = set().union(*map(set, ids))
    assert sum(map(len, ids)) == len(union) == 102
    assert {len(s) for s in shards} == {5}


def test_user_dataset_goes_through_dataloader():
    loader = make_loader(_Squares(), batch_size=8, shuffle=True, seed=0)
    assert isinstance(loader, DataLoaderWrapper) and len(loader) == 7
    xs, ys = zip(*loader)
    y = torch.cat(ys)
    assert sorted(y.tolist()) == list(range(50))
    assert torch.equal(torch.cat(xs)[:, 0], (y * y).float())


def test_torch_dataloader_input_is_wrapped():
    from torch.utils.data import DataLoader

    loader = make_loader(DataLoader(_Squares(), batch_size=3), batch_size=10, shuffle=False)
    assert len(loader) == 5 and _ids(loader) == list(range(50))


def test_split_defaults_to_in_memory_and_bad_arguments_fail():
    assert isinstance(make_loader(_split(), batch_size=4, shuffle=False), InMemoryLoader)
    with pytest.raises(ConfigError, match="batch_size=0"):
        make_loader(_split(), batch_size=0, shuffle=False)
    with pytest.raises(ConfigError, match="rank=2, world_size=2"):
        make_loader(_split(), batch_size=4, shuffle=False, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="memory needs a Split"):
        make_loader(_Squares(), batch_size=4, shuffle=False, loader="memory")


def test_loader_feeds_real_training():
    """A few epochs of a linear model on MNIST slices through the loader learn something."""
    from dlopt.data import load_dataset

    torch.manual_seed(0)
    b = load_dataset("mnist", subset=2000, test_subset=500)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = make_loader(b.train, batch_size=128, shuffle=True, seed=0)
    for _ in range(3):
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    acc = (model(b.test.x).argmax(1) == b.test.y).float().mean()
    assert float(acc) > 0.8


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("kind", ["memory", "dataloader"])
def test_batches_arrive_on_the_device(device, kind):
    loader = make_loader(_split(), batch_size=32, shuffle=True, seed=0, device=device, loader=kind)
    for x, y in loader:
        assert x.device.type == device and y.device.type == device
    assert sorted(_ids(loader)) == list(range(103))
