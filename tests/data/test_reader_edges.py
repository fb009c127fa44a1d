"""Reader edges that used to be misread: Python-only number spellings in CSV cells, a nameless
CSV column (pandas' index), a file not separated by commas, a few gray images in a colour
image folder, IDX images that are not uint8."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dlopt.data import load_dataset
from dlopt.data._idx import IDX_FILES

from data_helpers import load_error


@pytest.mark.parametrize("codes", [("10_3", "20_1"), ("\u0661\u0662", "\u0663")])  # float(): 103, 12
def test_underscored_and_non_ascii_digits_are_text_not_numbers(tmp_path, codes):
    p = tmp_path / "c.csv"
    p.write_text("code,b,y\n" + "".join(f"{codes[i % 2]},{i},{i % 2}\n" for i in range(20)), encoding="utf-8")
    msg = load_error(f"csv:{p}", target="y")
    assert "column 'code' is non-numeric; add preprocess op label_encode" in msg
    b = load_dataset(f"csv:{p}", target="y", preprocess=[{"op": "label_encode"}])
    assert b.preprocessor.categories == {0: sorted(codes)}


def test_a_nameless_column_is_refused_naming_pandas_index(tmp_path):
    p = tmp_path / "i.csv"
    p.write_text(",a,y\n" + "".join(f"{i},{i * 0.5},{i // 10}\n" for i in range(20)))
    assert load_error(f"csv:{p}", target="y") == (
        f"csv file {p}: column 1 has no name; each column needs one (a nameless first column is "
        "pandas' row index: write the file with to_csv(index=False))")


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_file_separated_by_other_than_commas_says_so(tmp_path, sep):
    p = tmp_path / "s.csv"
    p.write_text(sep.join("aby") + "\n" + "".join(f"{i}{sep}{i}{sep}{i % 2}\n" for i in range(20)))
    assert load_error(f"csv:{p}", target="y") == (
        f"csv file {p}: the header is one column {sep.join('aby')!r}; fields must be separated by commas "
        f"(this file seems to use {sep!r})")


def test_gray_images_in_a_colour_folder_are_read_as_rgb(tmp_path, make_images):
    root = make_images(tmp_path / "imgs", mode="RGB", per_class=5)
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(gray, mode="L").save(root / "cat" / "gray.jpg", quality=100)
    b = load_dataset(f"imagefolder:{root}", val_fraction=0.0, test_fraction=0.1, seed=0)
    assert b.info.input_shape == (3, 8, 8) and len(b.train) + len(b.test) == 11
    x = np.concatenate([b.train.pixels.numpy(), b.test.pixels.numpy()])
    same = [img for img in x if np.array_equal(img[0], img[1]) and np.array_equal(img[1], img[2])]
    assert len(same) == 1  # the gray file, its one channel repeated


@pytest.mark.parametrize("dtype, top, scale", [(np.float32, 1.0, 1.0), (np.int16, 4095, 65535.0)])
def test_idx_images_that_are_not_uint8_are_scaled_as_npz_images(tmp_path, make_idx, dtype, top, scale):
    rng = np.random.default_rng(0)
    for part, n in (("train", 40), ("test", 10)):
        x = (rng.random((n, 6, 6)) * top).astype(dtype)
        make_idx(tmp_path / IDX_FILES[f"{part}_x"], x)
        make_idx(tmp_path / IDX_FILES[f"{part}_y"], np.arange(n) % 2)
        if part == "test":
            want = x[:, None].astype(np.float32) / np.float32(scale)
    b = load_dataset(f"idx:{tmp_path}", val_fraction=0.0)
    assert np.allclose(b.test.x.numpy(), want, atol=1e-7)
