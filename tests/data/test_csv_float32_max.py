"""csv: the float32 limit is decided by the cast itself: numpy's own text of the float32 max
(``3.4028235e+38``, a hair above it in float64) is a finite float32 and read, in training and
in predict; a number that would become infinite (``3.5e38``) is refused at its line."""

from __future__ import annotations

import numpy as np
import pytest

from dlopt.data import load_dataset
from dlopt.data._values import beyond_float32
from dlopt.train.inputs_raw import read_raw_input

from data_helpers import load_error

_MAX = str(np.finfo(np.float32).max)  # numpy writes it 3.4028235e+38


def _csv(tmp_path, cell: str):
    p = tmp_path / "f.csv"
    p.write_text("a,b,y\n" + "".join(f"{cell if i == 5 else i},{i % 7},{i % 2}\n" for i in range(30)))
    return p


@pytest.mark.parametrize("cell", [_MAX, f"-{_MAX}"])
def test_the_float32_max_as_numpy_writes_it_is_read(tmp_path, cell):
    p = _csv(tmp_path, cell)
    b = load_dataset(f"csv:{p}", target="y", val_fraction=0.0)
    xs = np.concatenate([b.train.x.numpy().ravel(), b.test.x.numpy().ravel()])
    assert np.isfinite(xs).all() and np.abs(xs).max() == np.finfo(np.float32).max
    for categories in (None, {}):  # columns guessed, and known to be numbers
        assert np.isfinite(read_raw_input(p, (2,), categories=categories)).all()


def test_a_number_that_would_become_infinite_is_refused(tmp_path):
    p = _csv(tmp_path, "3.5e38")
    assert "line 7, column 'a': '3.5e38' is beyond float32" in load_error(f"csv:{p}", target="y")
    assert beyond_float32(3.5e38) and not beyond_float32(float(_MAX)) and not beyond_float32(float("nan"))
    assert beyond_float32(np.array([1.0, float(_MAX), -3.5e38])).tolist() == [False, False, True]
