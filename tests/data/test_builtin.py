"""Every built-in dataset: shapes, dtypes, split sizes, determinism by seed."""

from __future__ import annotations

import os
import sys
import subprocess

import numpy as np
import pytest
import torch

from dlopt.data import DATASETS, check_dataset_name, list_datasets, load_dataset
from dlopt.errors import ConfigError

# name -> (input_shape, classes, has official test split, subset for a fast load)
BUILTIN = {
    "mnist": ((1, 28, 28), 10, True, 600),
    "digits": ((1, 8, 8), 10, False, None),
    "mnist1d": ((40,), 10, True, None),
    "iris": ((4,), 3, False, None),
    "wine": ((13,), 3, False, None),
    "breast-cancer": ((30,), 2, False, None),
    "diabetes": ((10,), 0, False, None),
}


def test_every_registered_name_is_covered():
    assert set(DATASETS.names()) == set(BUILTIN) | {"fashion-mnist"}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_shapes_dtypes_and_sizes(name):
    shape, classes, official_test, subset = BUILTIN[name]
    b = load_dataset(name, seed=0, subset=subset, test_subset=200 if subset else None)
    assert b.info.input_shape == shape and b.info.num_classes == classes
    assert b.info.task == ("regression" if classes == 0 else "classification")
    for split in (b.train, b.val, b.test):
        assert split.x.dtype == torch.float32 and tuple(split.x.shape[1:]) == shape
        assert split.y.dtype == (torch.float32 if classes == 0 else torch.int64)
        assert split.y.shape == (len(split),)
        assert torch.isfinite(split.x).all()
    if len(shape) == 3:  # images are scaled to [0, 1]
        assert b.train.x.min() >= 0 and b.train.x.max() <= 1 and b.train.x.max() > 0.5
    if classes:
        assert int(b.train.y.min()) >= 0 and int(b.train.y.max()) < classes
    entry = DATASETS.get(name).info
    pool = subset or entry["n_train"]
    if official_test:
        assert len(b.test) == (200 if subset else entry["n_test"])
        assert len(b.train) + len(b.val) == pool
    else:  # stratified 20% test split carved from everything
        assert len(b.test) == round(0.2 * entry["n_train"])
        assert len(b.train) + len(b.val) + len(b.test) == entry["n_train"]
    assert len(b.val) == round(0.1 * (len(b.train) + len(b.val)))
    assert (b.info.n_train, b.info.n_test) == (len(b.train), len(b.test))


@pytest.mark.parametrize("name", ["iris", "digits", "mnist"])
def test_same_seed_same_split_other_seed_other_split(name):
    kw = {"subset": 500} if name == "mnist" else {}
    a, b, c = (load_dataset(name, seed=s, **kw) for s in (3, 3, 4))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    assert torch.equal(a.test.x, b.test.x)
    assert not torch.equal(a.train.x, c.train.x)


def test_stratified_splits_keep_class_balance():
    b = load_dataset("iris", seed=1)
    counts = torch.bincount(b.test.y, minlength=3)
    assert counts.tolist() == [10, 10, 10]


def test_subset_and_test_subset_are_stratified_and_small():
    b = load_dataset("mnist", subset=1000, test_subset=300, val_fraction=0.2, seed=0)
    assert (len(b.train), len(b.val), len(b.test)) == (800, 200, 300)
    assert torch.bincount(b.train.y, minlength=10).min() >= 70  # ~80 per class


def test_val_fraction_zero_gives_no_val():
    b = load_dataset("wine", val_fraction=0.0)
    assert b.val is None and len(b.train) + len(b.test) == 178


def test_regression_targets_are_float():
    b = load_dataset("diabetes", preprocess=[{"op": "zscore"}])
    assert b.info.out_features == 1 and b.train.y.dtype == torch.float32
    assert abs(float(b.train.x.mean())) < 1e-4


def test_fashion_mnist_from_data_dir():
    if not os.environ.get("DLOPT_DATA_DIR"):
        pytest.skip("DLOPT_DATA_DIR is unset: no Fashion-MNIST files to read")
    b = load_dataset("fashion-mnist", subset=500, test_subset=100)
    assert b.info.input_shape == (1, 28, 28) and b.info.class_names[0] == "T-shirt/top"
    assert (len(b.train) + len(b.val), len(b.test)) == (500, 100)
    assert 0 <= float(b.train.x.min()) and float(b.train.x.max()) <= 1


def test_mnist1d_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("DLOPT_CACHE_DIR", str(tmp_path))
    state = np.random.get_state()[1].copy()
    first = load_dataset("mnist1d", seed=0)
    assert (tmp_path / "mnist1d-v1.npz").is_file()
    assert np.array_equal(np.random.get_state()[1], state)  # global numpy RNG untouched
    again = load_dataset("mnist1d", seed=0)
    assert torch.equal(first.train.x, again.train.x) and torch.equal(first.test.y, again.test.y)


def test_data_dir_idx_sets_are_datasets(idx_set):
    data_dir = idx_set.parent
    check_dataset_name("tiny", data_dir)
    b = load_dataset("tiny", data_dir=data_dir, seed=0)
    assert b.info.input_shape == (1, 6, 6) and b.info.num_classes == 3
    assert len(b.test) == 20 and len(b.train) + len(b.val) == 60
    rows = {r.name: r for r in list_datasets(data_dir)}
    assert rows["tiny"].n_train == 60 and rows["tiny"].num_classes == 3
    assert "mnist" in rows and rows["mnist"].n_test == 10000


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown dataset 'nope'; valid: .*mnist.*npz:PATH"):
        check_dataset_name("nope")
    with pytest.raises(ConfigError, match="unknown data format 'parquet'"):
        check_dataset_name("parquet:x.pq")


def test_unknown_name_in_config_lists_valid_names():
    from dlopt.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config(overrides=["data.name=nope"])
    msg = str(info.value)
    assert "nope" in msg and "mnist" in msg and "fashion-mnist" in msg and "\n" not in msg


def test_check_dataset_name_does_not_import_torch():
    code = ("import sys, dlopt.data as d; d.check_dataset_name('mnist'); "
            "d.check_dataset_name('csv:a.csv'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_scaled_images_stay_uint8_and_match_the_float_path_bit_for_bit():
    """MNIST (scale only) is held as uint8 pixels; its float inputs, rows and loader batches are
    exactly numpy's float32 division, and a second op keeps the converted-array path."""
    from dlopt.data import Split, make_loader

    b = load_dataset("mnist", seed=0, subset=600, test_subset=200)
    for split in (b.train, b.val, b.test):
        assert split.pixels is not None and split.pixels.dtype == torch.uint8 and split.divisor == 255.0
        assert split.input_shape == (1, 28, 28) and split._x is None  # nothing converted at load
    expected = b.test.pixels.numpy().astype(np.float32) / np.float32(255)
    idx = torch.tensor([5, 0, 199, 17])
    assert torch.equal(b.test.rows(idx), torch.from_numpy(expected[idx.numpy()]))
    assert torch.equal(b.test.rows(slice(10, 20)), torch.from_numpy(expected[10:20]))
    assert torch.equal(b.test.x, torch.from_numpy(expected)) and b.test.x is b.test.x  # kept
    floats = Split(b.train.x.clone(), b.train.y)
    for shuffle in (True, False):
        held = list(make_loader(b.train, batch_size=64, shuffle=shuffle, seed=3))
        plain = list(make_loader(floats, batch_size=64, shuffle=shuffle, seed=3))
        assert len(held) == len(plain) == 9
        assert all(torch.equal(h[0], p[0]) and torch.equal(h[1], p[1]) for h, p in zip(held, plain))
    parts = list(b.test.batches(64))
    assert [len(y) for _, y in parts] == [64, 64, 64, 8]
    assert torch.equal(torch.cat([x for x, _ in parts]), b.test.x)
    from dlopt.train.metrics import evaluate_model

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    on_split = evaluate_model(model, b.test, task="classification", batch_size=64)
    assert on_split == evaluate_model(model, b.test.x, b.test.y, task="classification", batch_size=64)
    zscored = load_dataset("mnist", seed=0, subset=600, test_subset=200, preprocess=[{"op": "zscore"}])
    assert zscored.train.pixels is None and zscored.train.x.dtype == torch.float32
