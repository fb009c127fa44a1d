"""User data: npz:, csv:, imagefolder: and idx: written to tmp_path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlopt.data import load_dataset
from dlopt.errors import DataError


def test_npz_classification_with_official_test(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "d.npz"
    np.savez(p, x=rng.normal(size=(50, 5)).astype(np.float32), y=np.arange(50) % 2,
             x_test=rng.normal(size=(10, 5)), y_test=np.arange(10) % 2)
    b = load_dataset(f"npz:{p}", seed=0)
    assert b.info.task == "classification" and b.info.num_classes == 2
    assert b.info.input_shape == (5,) and len(b.test) == 10 and len(b.train) + len(b.val) == 50


def test_npz_images_uint8_are_scaled(tmp_path):
    p = tmp_path / "img.npz"
    x = np.random.default_rng(0).integers(0, 256, (40, 3, 4, 4)).astype(np.uint8)
    np.savez(p, x=x, y=np.arange(40) % 4, class_names=np.array(["a", "b", "c", "d"]))
    b = load_dataset(f"npz:{p}")
    assert b.info.input_shape == (3, 4, 4) and b.info.class_names == ["a", "b", "c", "d"]
    assert float(b.train.x.max()) <= 1.0 and float(b.train.x.max()) > 0.9
    raw = x[:3]
    assert np.allclose(b.preprocessor.transform(raw), raw / 255.0, atol=1e-6)


def test_npz_regression_and_string_labels(tmp_path):
    p = tmp_path / "r.npz"
    np.savez(p, x=np.arange(60, dtype=np.float32).reshape(30, 2), y=np.linspace(0, 1, 30))
    b = load_dataset(f"npz:{p}")
    assert b.info.task == "regression" and b.train.y.dtype == torch.float32
    q = tmp_path / "s.npz"
    np.savez(q, x=np.zeros((20, 2)), y=np.array(["no", "yes"] * 10))
    s = load_dataset(f"npz:{q}")
    assert s.info.class_names == ["no", "yes"] and s.info.num_classes == 2


def test_csv_numeric_with_text_target(tmp_path):
    p = tmp_path / "t.csv"
    rows = ["a,b,label"] + [f"{i},{i % 7 * 0.5},{'yes' if i % 2 else 'no'}" for i in range(40)]
    p.write_text("\n".join(rows) + "\n")
    b = load_dataset(f"csv:{p}", target="label", preprocess=[{"op": "zscore"}])
    assert b.info.class_names == ["no", "yes"] and b.info.input_shape == (2,)
    assert len(b.test) == 8 and len(b.train) + len(b.val) == 32


def test_csv_integer_target_is_classes_float_target_is_regression(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("x,y\n" + "".join(f"{i},{i % 3 + 1}\n" for i in range(30)))
    b = load_dataset(f"csv:{p}", target="y")
    assert b.info.class_names == ["1", "2", "3"] and int(b.train.y.max()) == 2
    r = tmp_path / "r.csv"
    r.write_text("x,y\n" + "".join(f"{i},{i * 0.37}\n" for i in range(30)))
    assert load_dataset(f"csv:{r}", target="y").info.task == "regression"


def test_csv_categories_and_missing_values_with_encoder_and_imputer(tmp_path):
    p = tmp_path / "m.csv"
    colors = ["red", "green", "blue"]
    lines = ["size,color,y"] + [f"{'' if i % 5 == 0 else i},{colors[i % 3]},{i % 2}" for i in range(30)]
    p.write_text("\n".join(lines) + "\n")
    b = load_dataset(f"csv:{p}", target="y",
                     preprocess=[{"op": "zscore"}, {"op": "label_encode"}, {"op": "impute"}])
    assert b.preprocessor.op_names == ["label_encode", "impute", "zscore"]
    assert torch.isfinite(b.train.x).all() and b.info.input_shape == (2,)
    raw = np.array([[3.0, "green"], [np.nan, "purple"]], dtype=object)
    out = b.preprocessor.transform(raw)
    assert out.shape == (2, 2) and np.isfinite(out).all()


def test_imagefolder_reads_classes(image_dir):
    b = load_dataset(f"imagefolder:{image_dir}", val_fraction=0.0, seed=0)
    assert b.info.class_names == ["cat", "dog"] and b.info.input_shape == (1, 8, 8)
    assert len(b.train) + len(b.test) == 12
    assert 0.0 <= float(b.train.x.min()) and float(b.train.x.max()) <= 1.0


def test_imagefolder_rgb(tmp_path, make_images):
    d = make_images(tmp_path / "rgb", mode="RGB", classes=("a", "b", "c"), per_class=4)
    b = load_dataset(f"imagefolder:{d}", val_fraction=0.0)
    assert b.info.input_shape == (3, 8, 8) and b.info.num_classes == 3


def test_idx_prefix(idx_set):
    b = load_dataset(f"idx:{idx_set}", subset=30, test_subset=10, seed=2)
    assert b.info.input_shape == (1, 6, 6) and len(b.test) == 10
    assert len(b.train) + len(b.val) == 30


def test_csv_without_target_names_columns(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(DataError, match=r"n.csv: set data.target .* a, b"):
        load_dataset(f"csv:{p}")
