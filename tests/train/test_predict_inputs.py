"""``dlopt predict RUN rows.csv`` reads CSV rows as training read them: the header line is
told from data by the run's saved text columns, missing-value tokens are NaN for the run's
imputation, text columns keep their strings, a byte-order mark is skipped. Images decode to
8 bits as the image folder reader does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.train import load
from dlopt.train.inputs_raw import read_raw_input
from train_helpers import one_error_line, train_table

runner = CliRunner()
COLORS, SIZES = ("red", "green", "blue"), ("s", "m", "l")


def _train(tmp: Path, name: str, csv_text: str, ops: list[dict]) -> Path:
    (tmp / f"{name}.csv").write_text(csv_text)
    return train_table(tmp, {"name": f"csv:{tmp / f'{name}.csv'}", "target": "y", "preprocess": ops}, name=name)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    """Every feature is text (label_encode)."""
    rows = "".join(f"{COLORS[i % 3]},{SIZES[i // 3 % 3]},{i % 2}\n" for i in range(60))
    return _train(tmp_path_factory.mktemp("text"), "text", "color,size,y\n" + rows, [{"op": "label_encode"}])


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory) -> Path:
    """Numbers with missing cells (impute) beside a text column whose values look like numbers."""
    codes = ("10", "x", "y")
    rows = "".join(f"{'' if i % 6 == 0 else i},{i % 7},{codes[i % 3]},{i % 2}\n" for i in range(60))
    return _train(tmp_path_factory.mktemp("mixed"), "mixed", "a,b,code,y\n" + rows,
                  [{"op": "impute"}, {"op": "label_encode"}])


@pytest.fixture(scope="module")
def imputing_run(tmp_path_factory) -> Path:
    """Numbers only, with missing cells (impute): a .npy may hold NaN for them."""
    rows = "".join(f"{'' if i % 6 == 0 else i},{i % 7},{i % 2}\n" for i in range(60))
    return _train(tmp_path_factory.mktemp("num"), "num", "a,b,y\n" + rows, [{"op": "impute"}])


def _predict(run: Path, rows: Path) -> list[str]:
    res = runner.invoke(app, ["predict", str(run), str(rows), "--top", "2"])
    assert res.exit_code == 0, res.output
    return [ln for ln in res.stdout.splitlines() if ln.strip()]


def _expected(run: Path, raw: list[list]) -> list[str]:
    pred, _ = load(run).predict(np.array(raw, dtype=object))
    names = load(run).info.class_names
    return [f"{i}: class {names[int(p)]}" for i, p in enumerate(pred)]


def test_text_rows_without_a_header_are_all_predicted(text_run, tmp_path) -> None:
    raw = [["red", "s"], ["green", "m"], ["blue", "l"]]
    (tmp_path / "rows.csv").write_text("".join(",".join(r) + "\n" for r in raw))
    (tmp_path / "head.csv").write_text("color,size\n" + "".join(",".join(r) + "\n" for r in raw))
    want = _expected(text_run, raw)
    for name in ("rows.csv", "head.csv"):
        got = _predict(text_run, tmp_path / name)
        assert [ln.split("  (")[0] for ln in got] == want


def test_missing_cells_and_numeric_looking_text_read_as_in_training(mixed_run, tmp_path) -> None:
    (tmp_path / "rows.csv").write_text("a,b,code\n3,,10\nNA,4,10\n?,5,x\n")
    (tmp_path / "nohead.csv").write_text("3,,10\nNA,4,10\n")  # every cell a number or missing
    want = _expected(mixed_run, [[3.0, np.nan, "10"], [np.nan, 4.0, "10"], [np.nan, 5.0, "x"]])
    assert [ln.split("  (")[0] for ln in _predict(mixed_run, tmp_path / "rows.csv")] == want
    assert [ln.split("  (")[0] for ln in _predict(mixed_run, tmp_path / "nohead.csv")] == want[:2]


def test_a_byte_order_mark_is_no_part_of_the_first_cell(mixed_run, tmp_path) -> None:
    (tmp_path / "excel.csv").write_bytes("\ufeff3,1,10\n4,2,x\n".encode())
    want = _expected(mixed_run, [[3.0, 1.0, "10"], [4.0, 2.0, "x"]])
    assert [ln.split("  (")[0] for ln in _predict(mixed_run, tmp_path / "excel.csv")] == want


def test_text_in_a_numeric_column_is_one_line(mixed_run, tmp_path) -> None:
    (tmp_path / "bad.csv").write_text("3,abc,10\n")
    res = runner.invoke(app, ["predict", str(mixed_run), str(tmp_path / "bad.csv")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "column 2 holds 'abc', not a number" in res.output


def test_a_16bit_image_is_scaled_as_the_image_folder_reads_it(tmp_path) -> None:
    from PIL import Image

    arr = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    Image.fromarray(arr).save(tmp_path / "x.png")
    x = read_raw_input(tmp_path / "x.png", (1, 8, 8))
    assert x.shape == (1, 1, 8, 8) and np.array_equal(x[0, 0], np.rint(arr / 65535 * 255).astype(np.uint8))


def test_npy_nan_is_missing_where_the_run_imputes_but_inf_is_refused_at_its_index(imputing_run, tmp_path) -> None:
    x = np.array([[3.0, 1.0], [np.nan, 4.0], [5.0, 6.0]])
    np.save(tmp_path / "nan.npy", x)
    assert _predict(imputing_run, tmp_path / "nan.npy")[1].startswith(_expected(imputing_run, x.tolist())[1])
    x[2, 1] = -np.inf
    np.save(tmp_path / "inf.npy", x)
    res = runner.invoke(app, ["predict", str(imputing_run), str(tmp_path / "inf.npy")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"{tmp_path / 'inf.npy'}: -inf at index [2, 1] (1 such value(s)); allowed: finite numbers, " \
           "or NaN for a missing value" in res.output


def test_a_npy_for_a_run_with_a_text_column_is_one_line(mixed_run, tmp_path) -> None:
    # as the server refuses inputs_npy there: its numbers were all encoded as unseen categories
    np.save(tmp_path / "rows.npy", np.array([[3.0, 1.0, 10.0]]))
    res = runner.invoke(app, ["predict", str(mixed_run), str(tmp_path / "rows.npy")])
    assert one_error_line(res, 2) == (f"error: {tmp_path / 'rows.npy'}: a .npy array holds numbers only, but the "
                                      "run has text column(s) 'code'; allowed: a CSV file with text in those columns")


def test_eval_of_an_onnx_file_says_how_to_score_one(tmp_path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")  # what it holds is never read
    line = one_error_line(runner.invoke(app, ["eval", str(tmp_path / "m.onnx")]), 2)
    assert line.startswith(f"error: {tmp_path / 'm.onnx'} is a file; allowed: a run or checkpoint directory; "
                           f"an ONNX file is scored by dlopt bench {tmp_path / 'm.onnx'}")
