"""Bad data: one clear line naming the file and the fault."""

from __future__ import annotations

import gzip
import logging

import numpy as np
import pytest

from dlopt.data import load_dataset
from dlopt.data._idx import IDX_FILES, read_idx_set
from dlopt.errors import DataError

from data_helpers import load_error


# ------------------------------------------------------------------------------- IDX
def test_truncated_idx(idx_set):
    f = idx_set / IDX_FILES["train_x"]
    f.write_bytes(gzip.compress(gzip.decompress(f.read_bytes())[:-50]))
    msg = load_error(f"idx:{idx_set}")
    assert "truncated IDX file" in msg and str(f) in msg


def test_corrupt_gzip(idx_set):
    f = idx_set / IDX_FILES["test_y"]
    data = f.read_bytes()
    f.write_bytes(data[:12] + b"\x00" * 8 + data[20:])
    msg = load_error(f"idx:{idx_set}")
    assert "corrupt gzip file" in msg and str(f) in msg


def test_not_an_idx_file(idx_set):
    f = idx_set / IDX_FILES["train_y"]
    f.write_bytes(gzip.compress(b"hello, not idx"))
    assert f"not an IDX file {f}" in load_error(f"idx:{idx_set}")


def test_checksum_mismatch(idx_set):
    name = IDX_FILES["train_x"]
    with pytest.raises(DataError, match=rf"checksum mismatch for .*{name}: sha256"):
        read_idx_set(idx_set, checksums={name: "0" * 64})


def test_idx_length_mismatch(idx_set, make_idx):
    make_idx(idx_set / IDX_FILES["train_y"], np.zeros(59, dtype=np.uint8))
    msg = load_error(f"idx:{idx_set}")
    assert "x/y length mismatch" in msg and str(idx_set) in msg and "60" in msg and "59" in msg


def test_missing_file_and_directory(idx_set, tmp_path):
    (idx_set / IDX_FILES["test_x"]).unlink()
    assert f"IDX folder {idx_set}: missing file {IDX_FILES['test_x']};" in load_error(f"idx:{idx_set}")
    assert f"missing directory: {tmp_path / 'nope'}" in load_error(f"idx:{tmp_path / 'nope'}")
    assert f"missing file: {tmp_path / 'x.npz'}" in load_error(f"npz:{tmp_path / 'x.npz'}")


def test_fashion_mnist_without_files(tmp_path):
    msg = load_error("fashion-mnist", data_dir=tmp_path)
    assert f"missing data directory: {tmp_path / 'fashion-mnist'}" in msg


# ------------------------------------------------------------------------- npz / csv
def test_labels_outside_range(tmp_path):
    p = tmp_path / "l.npz"
    np.savez(p, x=np.zeros((6, 2)), y=np.array([0, 1, 2, 0, 1, 2]), class_names=np.array(["a", "b"]))
    assert f"labels outside [0, 2) in {p}: found 2" in load_error(f"npz:{p}")
    q = tmp_path / "neg.npz"
    np.savez(q, x=np.zeros((6, 2)), y=np.array([0, 1, -1, 0, 1, 1]))
    assert f"labels outside [0, 2) in {q}: found -1" in load_error(f"npz:{q}")


def test_npz_length_mismatch_missing_key_and_empty(tmp_path):
    p = tmp_path / "m.npz"
    np.savez(p, x=np.zeros((10, 2)), y=np.zeros(9, dtype=np.int64))
    assert f"x/y length mismatch in {p}: x has 10, y has 9" in load_error(f"npz:{p}")
    q = tmp_path / "k.npz"
    np.savez(q, x=np.zeros((10, 2)))
    assert f"npz file {q} lacks array 'y'" in load_error(f"npz:{q}")
    e = tmp_path / "e.npz"
    np.savez(e, x=np.zeros((0, 2)), y=np.zeros(0, dtype=np.int64))
    assert f"empty dataset: {e}" in load_error(f"npz:{e}")


def test_npz_corrupt_and_pickled(tmp_path):
    p = tmp_path / "c.npz"
    p.write_bytes(b"PK\x03\x04 broken zip")
    assert f"corrupt npz file {p}" in load_error(f"npz:{p}")
    q = tmp_path / "obj.npz"
    np.savez(q, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    assert f"cannot read npz file {q}" in load_error(f"npz:{q}")


def test_csv_text_column_without_encoder(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("size,color,y\n" + "".join(f"{i},{'red' if i % 2 else 'blue'},{i % 2}\n" for i in range(20)))
    msg = load_error(f"csv:{p}", target="y")
    assert f"{p}: column 'color' is non-numeric; add preprocess op label_encode" in msg


def test_csv_missing_values_without_imputer(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("a,b,y\n" + "".join(f"{i},{'' if i < 3 else i},{i % 2}\n" for i in range(20)))
    assert f"{p}: column 'b' has 3 missing values; add preprocess op impute" in load_error(f"csv:{p}", target="y")


def test_csv_ragged_empty_and_unknown_target(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("a,b,y\n1,2,0\n3,4\n")
    assert f"csv file {p} line 3: 2 fields, header has 3" in load_error(f"csv:{p}", target="y")
    e = tmp_path / "e.csv"
    e.write_text("a,b,y\n")
    assert f"empty dataset: csv file {e} has no data rows" in load_error(f"csv:{e}", target="y")
    p.write_text("a,b,y\n1,2,0\n")
    assert "no column 'z'; columns: a, b, y" in load_error(f"csv:{p}", target="z")


# ------------------------------------------------------------------------ imagefolder
def _break(image_dir, kind: str):
    f = image_dir / "cat" / "0.png"
    if kind == "zero-byte":
        f.write_bytes(b"")
    elif kind == "truncated":
        f.write_bytes(f.read_bytes()[:60])
    elif kind == "wrong-extension":
        f.write_text("this is text, not a png")
    elif kind == "shape":
        from PIL import Image

        Image.new("L", (9, 8)).save(f)
    return f


@pytest.mark.parametrize("kind, needle", [
    ("zero-byte", "zero-byte file"),
    ("truncated", "corrupt or truncated image"),
    ("wrong-extension", "not an image"),
    ("shape", "shape 1x8x9 differs from the common 1x8x8"),
])
def test_bad_image_fails_naming_the_file(image_dir, kind, needle):
    f = _break(image_dir, kind)
    msg = load_error(f"imagefolder:{image_dir}")
    assert msg.startswith(f"bad image {f}: {needle}") and "bad_samples=skip" in msg


@pytest.mark.parametrize("kind", ["zero-byte", "truncated", "wrong-extension", "shape"])
def test_bad_image_skipped_and_counted(image_dir, kind, caplog):
    _break(image_dir, kind)
    with caplog.at_level(logging.WARNING, logger="dlopt.data"):
        b = load_dataset(f"imagefolder:{image_dir}", bad_samples="skip", val_fraction=0.0)
    assert len(b.train) + len(b.test) == 11
    assert "skipped 1 bad image(s)" in caplog.text


def test_decompression_bomb(image_dir, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 32)  # our 8x8 = 64 pixels now look too big
    msg = load_error(f"imagefolder:{image_dir}")
    assert "decompression bomb" in msg and str(image_dir) in msg and "(+11 more bad files)" in msg


def test_empty_image_folder(tmp_path):
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    assert f"empty dataset: no image files under {tmp_path / 'imgs'}" in load_error(f"imagefolder:{tmp_path / 'imgs'}")
    assert "has no class sub-folders" in load_error(f"imagefolder:{tmp_path / 'imgs' / 'cat'}")
