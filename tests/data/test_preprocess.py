"""Every preprocessing op: fitted on train only, shapes, value ranges, save/load round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dlopt.data import Preprocessor, load_dataset
from dlopt.errors import ConfigError

OPS = [
    ("zscore", {}),
    ("minmax", {}),
    ("pca", {"n_components": 3}),
    ("lda", {"n_components": 2}),
    ("impute", {"strategy": "median"}),
]


@pytest.mark.parametrize("op, opts", OPS)
def test_op_fits_on_train_only_and_round_trips(op, opts, tmp_path):
    b = load_dataset("wine", seed=0, preprocess=[{"op": op, **opts}])
    x = b.train.x.numpy()
    n_out = opts.get("n_components", 13)
    assert b.info.input_shape == (n_out,) and b.test.x.shape[1:] == (n_out,)
    if op == "zscore":  # train statistics are exact; val/test only close
        assert np.allclose(x.mean(0), 0, atol=1e-4) and np.allclose(x.std(0), 1, atol=1e-3)
        assert not np.allclose(b.test.x.numpy().mean(0), 0, atol=1e-4)
    if op == "minmax":
        assert x.min() == pytest.approx(0, abs=1e-6) and x.max() == pytest.approx(1, abs=1e-6)
        assert np.allclose(x.min(0), 0, atol=1e-6) and np.allclose(x.max(0), 1, atol=1e-6)
    if op in ("pca", "lda"):  # projections of centered train data have mean zero on train
        assert np.allclose(x.mean(0), 0, atol=1e-3)
    b.preprocessor.save(tmp_path)
    assert json.loads((tmp_path / "preprocess.json").read_text())["ops"][0]["op"] == op
    again = Preprocessor.load(tmp_path)
    raw = np.random.default_rng(0).normal(10, 5, size=(7, 13))
    assert np.array_equal(again.transform(raw), b.preprocessor.transform(raw))


def test_minmax_test_values_may_leave_unit_range():
    # fitted on train only: a test sample beyond the training range maps outside [0, 1]
    pre = Preprocessor.build([{"op": "minmax"}]).fit(np.array([[0.0], [10.0]]))
    assert pre.transform(np.array([[20.0]]))[0, 0] == pytest.approx(2.0)


def test_image_scale_then_per_channel_zscore_keeps_shape(tmp_path):
    b = load_dataset("mnist", subset=500, test_subset=100, preprocess=[{"op": "zscore"}])
    x = b.train.x
    assert x.shape[1:] == (1, 28, 28)
    assert float(x.mean()) == pytest.approx(0, abs=1e-4) and float(x.std()) == pytest.approx(1, abs=1e-3)
    assert b.preprocessor.op_names == ["scale", "zscore"]
    b.preprocessor.save(tmp_path)
    raw = np.random.default_rng(0).integers(0, 256, (4, 1, 28, 28)).astype(np.uint8)
    assert np.array_equal(Preprocessor.load(tmp_path).transform(raw), b.preprocessor.transform(raw))


def test_pca_flattens_images():
    b = load_dataset("digits", preprocess=[{"op": "pca", "n_components": 10}])
    assert b.info.input_shape == (10,)


def test_label_encode_round_trip_and_unseen_values(tmp_path):
    x = np.array([[1.0, "a"], [2.0, "b"], [3.0, "a"]], dtype=object)
    pre = Preprocessor.build([{"op": "label_encode"}]).fit(x)
    assert pre.transform(x).tolist() == [[1, 0], [2, 1], [3, 0]]
    pre.save(tmp_path)
    again = Preprocessor.load(tmp_path)
    assert again.transform(np.array([[5.0, "zzz"]], dtype=object)).tolist() == [[5, -1]]


def test_impute_fills_with_train_statistic():
    x = np.array([[1.0], [np.nan], [3.0]])
    pre = Preprocessor.build([{"op": "impute", "strategy": "mean"}]).fit(x)
    assert pre.transform(np.array([[np.nan]]))[0, 0] == pytest.approx(2.0)


def test_state_is_not_pickle(tmp_path):
    b = load_dataset("iris", preprocess=[{"op": "zscore"}, {"op": "pca", "n_components": 2}])
    b.preprocessor.save(tmp_path)
    with np.load(tmp_path / "preprocess.npz", allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)
    state = b.preprocessor.state_dict()
    assert Preprocessor.from_state(state).transform(np.ones((1, 4))).shape == (1, 2)


def test_lda_needs_classes_and_bad_components_are_config_errors():
    with pytest.raises(ConfigError, match="lda needs class labels"):
        load_dataset("diabetes", preprocess=[{"op": "lda"}])
    with pytest.raises(ConfigError, match="preprocess op pca"):
        load_dataset("iris", preprocess=[{"op": "pca", "n_components": 9}])


def test_preprocessed_split_matches_transform_of_raw():
    b = load_dataset("iris", seed=0, preprocess=[{"op": "minmax"}])
    from sklearn.datasets import load_iris

    raw = load_iris().data
    out = torch.from_numpy(b.preprocessor.transform(raw))
    # every test row is the transform of some raw row
    d = torch.cdist(b.test.x, out, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
    assert float(d.max()) < 1e-5


def test_transform_accepts_flat_or_single_raw_samples(tmp_path):
    b = load_dataset("mnist", subset=300, test_subset=50)
    raw = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28)).astype(np.uint8)
    pre = b.preprocessor
    pre.save(tmp_path)
    again = Preprocessor.load(tmp_path)
    want = pre.transform(raw)
    assert want.shape == (3, 1, 28, 28)
    assert np.array_equal(again.transform(raw.reshape(3, 784)), want)
    assert np.array_equal(again.transform(raw[0, 0]), want[:1])
    from dlopt.errors import DataError

    with pytest.raises(DataError, match=r"input sample shape \(27, 27\) does not match"):
        again.transform(np.zeros((2, 27, 27), dtype=np.uint8))
