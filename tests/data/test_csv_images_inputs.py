"""csv: and imagefolder: inputs that used to be misread: missing-value tokens, a byte-order
mark, repeated column names, many integer labels, the preprocessing order; 16-bit, float,
palette and gray+alpha images, nested class folders."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from dlopt.data import load_dataset
from dlopt.errors import DataError


def _error(name: str, **kw) -> str:
    with pytest.raises(DataError) as exc:
        load_dataset(name, **kw)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------------- csv
@pytest.mark.parametrize("token", ["NA", "N/A", "null", "None", "#N/A", "?", " ? "])
def test_missing_value_tokens_are_missing_numbers(tmp_path, token):
    p = tmp_path / "m.csv"
    p.write_text("a,b,y\n" + "".join(f"{i},{token if i % 7 == 0 else i * 2},{i % 2}\n" for i in range(40)))
    msg = _error(f"csv:{p}", target="y")
    assert "column 'b' has 6 missing values" in msg and "impute" in msg
    b = load_dataset(f"csv:{p}", target="y", preprocess=[{"op": "impute"}])
    assert torch.isfinite(b.train.x).all() and b.info.input_shape == (2,)
    out = b.preprocessor.transform(np.array([[3.0, np.nan], [4.0, 8.0]]))
    assert np.isfinite(out).all() and out[1].tolist() == [4.0, 8.0]


def test_numbers_with_a_few_text_cells_are_refused_quoting_one(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b,y\n" + "".join(f"{i},{'unknown' if i % 9 == 0 else i},{i % 2}\n" for i in range(30)))
    for ops in ([], [{"op": "label_encode"}]):  # label_encode would code the numbers as text
        msg = _error(f"csv:{p}", target="y", preprocess=ops)
        assert msg.startswith(f"csv file {p}: column 'b' holds numbers but 4 cell(s) are text, e.g. 'unknown'")
        assert "NA, N/A, NaN, null, ?" in msg


def test_a_missing_token_in_a_numeric_target_is_refused_at_its_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,y\n" + "".join(f"{i},{'NA' if i == 3 else i % 2}\n" for i in range(20)))
    assert _error(f"csv:{p}", target="y") == (
        f"csv file {p} line 5, column 'y': the target has 1 missing value(s), e.g. 'NA'; every row needs a target")


def test_many_integer_labels_warn_that_they_are_a_regression_target(tmp_path, caplog):
    p = tmp_path / "r.csv"
    p.write_text("a,y\n" + "".join(f"{i},{i % 60}\n" for i in range(120)))
    with caplog.at_level(logging.WARNING, logger="dlopt.data"):
        assert load_dataset(f"csv:{p}", target="y").info.task == "regression"
    assert "target 'y' has 60 distinct integers (more than 50), so it is read as a regression target" in caplog.text
    assert "write the labels as text" in caplog.text
    q = tmp_path / "c.csv"
    q.write_text("a,y\n" + "".join(f"{i},c{i % 60}\n" for i in range(120)))
    assert load_dataset(f"csv:{q}", target="y").info.num_classes == 60


def test_impute_before_label_encode_in_the_config_runs_after_it(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("size,color,y\n" + "".join(f"{'' if i % 5 == 0 else i},{('red', 'blue')[i % 2]},{i % 2}\n"
                                            for i in range(30)))
    b = load_dataset(f"csv:{p}", target="y", preprocess=[{"op": "impute"}, {"op": "label_encode"}])
    assert b.preprocessor.op_names == ["label_encode", "impute"]
    assert torch.isfinite(b.train.x).all()


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    p = tmp_path / "excel.csv"
    p.write_bytes(("\ufefflabel,a,b\n" + "".join(f"{i % 2},{i},{i * 3}\n" for i in range(20))).encode())
    b = load_dataset(f"csv:{p}", target="label")
    assert b.info.num_classes == 2 and b.info.input_shape == (2,)


def test_repeated_column_names_are_refused(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("label,label,a\n" + "".join(f"{i % 2},{i % 2},{i}\n" for i in range(20)))
    assert _error(f"csv:{p}", target="label") == (
        f"csv file {p}: duplicate column name(s) 'label'; each column needs its own name")


# -------------------------------------------------------------------------- imagefolder
def _save(folder, name, img):
    folder.mkdir(parents=True, exist_ok=True)
    img.save(folder / name)


def test_16bit_gray_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, base in (("dark", 1000), ("bright", 40000)):
        for i in range(4):
            arr = (rng.integers(0, 20000, (8, 8)) + base).astype(np.uint16)
            _save(tmp_path / c, f"{i}.png", Image.fromarray(arr))
    with Image.open(tmp_path / "dark" / "0.png") as im:
        assert im.mode == "I;16"
        want = np.rint(np.asarray(im, dtype=np.float64) * 255 / 65535)
    b = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.0, test_fraction=0.25)
    x = torch.cat([b.train.x, b.test.x]) * 255
    assert float((x >= 254.5).float().mean()) < 0.05  # clipped: nearly every pixel was 255
    assert any(torch.allclose(img[0].double(), torch.from_numpy(want), atol=1e-3) for img in x)


def test_float_images_in_0_1_are_scaled_and_beyond_are_refused(tmp_path):
    from PIL import Image

    for c, v in (("a", 0.2), ("b", 0.8)):
        for i in range(3):
            _save(tmp_path / c, f"{i}.tif", Image.fromarray(np.full((4, 4), v, dtype=np.float32)))
    b = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.0, test_fraction=0.34)
    values = set(np.round(torch.cat([b.train.x, b.test.x]).numpy().ravel() * 255).tolist())
    assert values == {51.0, 204.0}
    bad = tmp_path / "a" / "0.tif"
    Image.fromarray(np.full((4, 4), 7.5, dtype=np.float32)).save(bad)
    msg = _error(f"imagefolder:{tmp_path}")
    assert msg.startswith(f"bad image {bad}: F pixel values 7.5..7.5 outside 0..1; allowed:")


def test_palette_images_keep_their_colour_and_gray_alpha_stays_gray(tmp_path):
    from PIL import Image

    for c, colour in (("red", (200, 10, 10)), ("green", (10, 200, 10))):
        for i in range(3):
            img = Image.new("RGB", (4, 4), colour).convert("P", palette=Image.Palette.ADAPTIVE)
            _save(tmp_path / "pal" / c, f"{i}.png", img)
            _save(tmp_path / "la" / c, f"{i}.png", Image.new("LA", (4, 4), (100 + 50 * i, 255)))
    pal = load_dataset(f"imagefolder:{tmp_path / 'pal'}", val_fraction=0.0, test_fraction=0.34)
    assert pal.info.input_shape == (3, 4, 4)
    pixels = {tuple(np.round(img[:, 0, 0].numpy() * 255).astype(int)) for img in pal.train.x}
    assert pixels <= {(200, 10, 10), (10, 200, 10)} and len(pixels) == 2
    assert load_dataset(f"imagefolder:{tmp_path / 'la'}", val_fraction=0.0,
                        test_fraction=0.34).info.input_shape == (1, 4, 4)


def test_images_in_nested_folders_belong_to_their_top_class_folder(tmp_path, make_images):
    d = make_images(tmp_path / "imgs", per_class=4)
    make_images(d / "cat" / "more", per_class=3, classes=("deeper",))
    (d / "dog" / ".cache").mkdir()
    (d / "dog" / ".cache" / "x.png").write_bytes(b"not read")  # hidden: left out
    b = load_dataset(f"imagefolder:{d}", val_fraction=0.0, test_fraction=0.25)
    assert b.info.class_names == ["cat", "dog"]
    y = torch.cat([b.train.y, b.test.y])
    assert len(y) == 11 and int((y == 0).sum()) == 7
