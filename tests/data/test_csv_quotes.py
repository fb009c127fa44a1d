"""csv: a quote opened and never closed is refused at the line it opens on, by the one reader
that training and ``dlopt predict`` share; a cell holding a newline inside closed quotes reads."""

from __future__ import annotations

import pytest

from dlopt.data import load_dataset
from dlopt.errors import DataError
from dlopt.train.inputs_raw import read_raw_input

from data_helpers import load_error

_OPEN = "a quoted cell opened on this line is never closed"


def _rows(n: int = 40) -> str:
    return "".join(f"{i},{i % 5},{'red' if i % 3 else 'blue'},{i % 2}\n" for i in range(n))


def test_an_unclosed_quote_is_refused_at_its_line_in_training(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text("a,b,c,y\n" + _rows(10) + '10,1,"red,0\n' + _rows())  # line 12 opens it
    assert load_error(f"csv:{p}", target="y").startswith(f"csv file {p} line 12: {_OPEN}, so the rest")


def test_an_unclosed_quote_is_refused_in_predict_inputs(tmp_path):
    p = tmp_path / "rows.csv"
    p.write_text('1,2,blue\n\n5,1.5,"red\n6,1,green\n7,2,red\n')
    with pytest.raises(DataError, match=f"^CSV {p} line 3: {_OPEN}"):
        read_raw_input(p, (3,), categories={2: ["blue", "green", "red"]})


def test_closed_quotes_holding_a_newline_or_a_comma_still_read(tmp_path):
    p = tmp_path / "ok.csv"
    p.write_text('a,b,c,y\n1,2,"dark\nred",0\n3,4,"blue, light",1\n' + _rows())
    b = load_dataset(f"csv:{p}", target="y", preprocess=[{"op": "label_encode"}])
    assert b.preprocessor.categories == {2: ["blue", "blue, light", "dark\nred", "red"]}
    assert sum(len(s) for s in (b.train, b.val, b.test)) == 42


def test_a_row_the_csv_module_cannot_read_names_the_line_it_starts_on(tmp_path):
    p = tmp_path / "big.csv"
    # a quote closed far below: the cell passes the csv module's field size limit (128 KiB)
    p.write_text("a,y\n" + '1,"0\n' + "x\n" * 70_000 + '"\n2,1\n')
    assert load_error(f"csv:{p}", target="y").startswith(f"malformed csv file {p} line 2: field larger")
