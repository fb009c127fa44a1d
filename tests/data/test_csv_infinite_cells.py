"""csv: a numeric cell that reads as an infinite number (inf, -Infinity, 1e999) is refused
when the file is read, naming the file, its line and the column; in a text column it stays text."""

from __future__ import annotations

import pytest

from dlopt.data import load_dataset
from dlopt.errors import DataError
from dlopt.train.inputs_raw import read_raw_input

from data_helpers import load_error


def _rows(bad: str, *, at: int = 5) -> str:
    return "".join(f"{bad if i == at else i},{i % 7},{i % 2}\n" for i in range(30))


@pytest.mark.parametrize("cell", ["inf", "-inf", " Infinity ", "+INF", "1e999"])
def test_an_infinite_feature_cell_is_refused_at_its_line(tmp_path, cell):
    p = tmp_path / "f.csv"
    p.write_text("a,b,y\n" + _rows(cell))
    for ops in ([], [{"op": "impute"}]):  # impute used to fail inside scikit-learn instead
        assert load_error(f"csv:{p}", target="y", preprocess=ops) == (
            f"csv file {p} line 7, column 'a': {cell.strip()!r} is not a finite number; allowed: finite "
            "numbers, or for a missing value an empty cell or a missing-value token "
            "(NA, N/A, NaN, null, ?, ...)")


def test_an_infinite_target_is_refused_at_its_line_after_a_multiline_cell(tmp_path):
    p = tmp_path / "t.csv"
    rows = "".join(f"{i},{'inf' if i == 9 else i * 0.5}\n" for i in range(30))
    p.write_text('a,y\n"1\n2",0.1\n' + rows)  # the quoted cell spans lines 2-3
    assert load_error(f"csv:{p}", target="y").startswith(
        f"csv file {p} line 13, column 'y': 'inf' is not a finite number")


def test_inf_in_a_text_column_is_a_category(tmp_path):
    p = tmp_path / "c.csv"
    levels = ("low", "high", "inf")
    p.write_text("level,b,y\n" + "".join(f"{levels[i % 3]},{i},{i % 2}\n" for i in range(30)))
    b = load_dataset(f"csv:{p}", target="y", preprocess=[{"op": "label_encode"}])
    assert b.preprocessor.categories == {0: ["high", "inf", "low"]}


@pytest.mark.parametrize("cell", ["1e39", "-3.5e38"])
def test_a_number_beyond_float32_is_refused_at_its_line_in_training_and_predict(tmp_path, cell):
    p = tmp_path / "f.csv"
    p.write_text("a,b,y\n" + _rows(cell))
    beyond = (f"line 7, column 'a': {cell!r} is beyond float32 (largest magnitude 3.403e+38), the type models "
              "compute in; allowed: finite numbers")
    assert load_error(f"csv:{p}", target="y").startswith(f"csv file {p} {beyond}")
    q = tmp_path / "t.csv"  # a regression target too
    q.write_text("a,y\n" + "".join(f"{i},{cell if i == 3 else i * 0.5}\n" for i in range(30)))
    assert load_error(f"csv:{q}", target="y").startswith(f"csv file {q} line 5, column 'y': {cell!r} is beyond")
    for categories in (None, {}):  # columns guessed, and known to be numbers
        with pytest.raises(DataError, match=f"^CSV {p} line 7, column 1: {cell!r} is beyond float32"):
            read_raw_input(p, (2,), categories=categories)
