"""Data that reads fine but cannot train: refused at load with one line, before step 1."""

from __future__ import annotations

import gzip
import logging
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.data import load_dataset
from dlopt.data._idx import IDX_FILES

from data_helpers import load_error

RNG = np.random.default_rng(0)
TABLE = RNG.normal(size=(60, 4)).astype(np.float32)
LABELS = np.arange(60) % 3


def _npz(tmp_path, **arrays) -> str:
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    return f"npz:{p}"


# ----------------------------------------------------------------------------- labels
@pytest.mark.parametrize("key, onehot", [
    ("y", np.eye(3)[LABELS]), ("y", np.eye(3, dtype=np.int64)[LABELS]), ("y_test", np.eye(3)[LABELS[:9]]),
])
def test_one_hot_labels_are_refused(tmp_path, key, onehot):
    arrays = {"x": TABLE, "y": LABELS, "x_test": TABLE[:9], "y_test": LABELS[:9], key: onehot}
    msg = load_error(_npz(tmp_path, **arrays))
    assert f"array {key!r} has shape {onehot.shape}" in msg and f"{key}.argmax(1)" in msg


def test_label_column_is_flattened(tmp_path):
    b = load_dataset(_npz(tmp_path, x=TABLE, y=LABELS[:, None], x_test=TABLE[:9], y_test=LABELS[:9, None]))
    assert b.train.y.ndim == 1 and b.test.y.ndim == 1 and b.info.num_classes == 3


@pytest.mark.parametrize("y, y_test, kinds", [
    (LABELS, np.array(list("abc") * 3), ("integer", "string")),
    (np.array(list("abc") * 20), LABELS[:9], ("string", "integer")),
])
def test_label_kinds_must_match_across_splits(tmp_path, y, y_test, kinds):
    msg = load_error(_npz(tmp_path, x=TABLE, y=y, x_test=TABLE[:9], y_test=y_test))
    assert f"y holds {kinds[0]} labels but y_test holds {kinds[1]} labels" in msg


def test_sparse_integer_labels_are_refused(tmp_path):
    y = np.where(LABELS == 0, 0, 10**6)  # ids, not class indices: a 1e6-wide head
    msg = load_error(_npz(tmp_path, x=TABLE, y=y))
    assert "reach 1000000 with only 2 distinct values" in msg and "class indices 0..K-1" in msg


def test_empty_classes_are_kept_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="dlopt.data"):
        b = load_dataset(_npz(tmp_path, x=TABLE, y=LABELS + 1, x_test=TABLE[:9], y_test=np.ones(9, np.int64)))
    assert b.info.num_classes == 4
    assert "1 of 4 classes have no training sample (0)" in caplog.text


@pytest.mark.parametrize("fmt", ["npz", "csv", "imagefolder"])
def test_single_class_data_is_refused(tmp_path, make_images, fmt):
    if fmt == "npz":
        name, kw, cls = _npz(tmp_path, x=TABLE, y=np.zeros(60, np.int64)), {}, "0"
    elif fmt == "csv":
        p = tmp_path / "t.csv"
        p.write_text("a,b,y\n" + "".join(f"{i},{i * 2},7\n" for i in range(30)))
        name, kw, cls = f"csv:{p}", {"target": "y"}, "'7'"
    else:
        name, kw, cls = f"imagefolder:{make_images(tmp_path / 'imgs', classes=('cat',))}", {}, "'cat'"
    msg = load_error(name, **kw)
    assert f"every training label is class {cls}; classification needs at least 2 classes" in msg


# ----------------------------------------------------------------------------- inputs
@pytest.mark.parametrize("x, x_test", [
    (RNG.normal(size=(60, 5)), RNG.normal(size=(9, 4))),
    (RNG.integers(0, 256, (60, 1, 8, 8)).astype(np.uint8), RNG.integers(0, 256, (9, 1, 10, 10)).astype(np.uint8)),
])
def test_test_inputs_must_have_the_training_shape(tmp_path, x, x_test):
    msg = load_error(_npz(tmp_path, x=x, y=LABELS, x_test=x_test, y_test=LABELS[:9]))
    assert f"x samples are {x.shape[1:]}, x_test samples {x_test.shape[1:]}" in msg


def test_test_inputs_must_have_the_training_dtype_kind(tmp_path):
    x = RNG.integers(0, 256, (60, 1, 8, 8)).astype(np.uint8)
    x_test = RNG.random((9, 1, 8, 8)).astype(np.float32)  # already in [0, 1]: dividing by 255 again is wrong
    msg = load_error(_npz(tmp_path, x=x, y=LABELS, x_test=x_test, y_test=LABELS[:9]))
    assert "x is integer (uint8), x_test is float (float32)" in msg


def test_npy_file_is_not_an_npz_archive(tmp_path):
    p = tmp_path / "plain.npy"
    np.save(p, TABLE)
    assert f"npz file {p} is a single .npy array, not an .npz archive" in load_error(f"npz:{p}")


# -------------------------------------------------------------------------------- IDX
def test_idx_test_images_of_another_size(idx_set, make_idx):
    make_idx(idx_set / IDX_FILES["test_x"], np.zeros((20, 7, 7), np.uint8))
    msg = load_error(f"idx:{idx_set}")
    assert f"image size mismatch in {idx_set}" in msg and "holds 6x6 images" in msg and "holds 7x7" in msg


def test_idx_header_whose_size_overflows(idx_set):
    f = idx_set / IDX_FILES["train_x"]
    f.write_bytes(gzip.compress(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**31, 2**31, 4) + bytes(100)))
    assert f"truncated IDX file {f}: 100 data bytes, header promises {2**64}" in load_error(f"idx:{idx_set}")


# -------------------------------------------------------------------------------- CLI
def test_cli_refuses_bad_labels_in_one_line(tmp_path):
    name = _npz(tmp_path, x=TABLE, y=np.eye(3)[LABELS])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: bad\ndata: {{name: '{name}'}}\nmodel: {{name: mlp}}\ntrain: {{epochs: 1}}\n")
    res = CliRunner().invoke(app, ["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--device", "cpu"])
    assert res.exit_code == 2 and len(res.output.splitlines()) == 1, res.output
    assert res.output.startswith("error: npz file") and "y.argmax(1)" in res.output
