"""``dlopt predict``: a run saves its CSV feature names, so a CSV header is told from data
exactly and its columns are taken by name (any order, the target left out); a bad cell is
named by line and column; a run trained on channels-last images takes .npy inputs in that layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.train import load
from train_helpers import one_error_line, train_table

runner = CliRunner()
CODES = ("10", "x", "y")


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory) -> Path:
    """Numbers with missing cells beside a text column whose values look like numbers."""
    tmp = tmp_path_factory.mktemp("csv")
    rows = "".join(f"{'' if i % 6 == 0 else i},{i % 7},{CODES[i % 3]},{i % 2}\n" for i in range(60))
    (tmp / "train.csv").write_text("a,b,code,y\n" + rows)
    return train_table(tmp, {"name": f"csv:{tmp / 'train.csv'}", "target": "y",
                        "preprocess": [{"op": "impute"}, {"op": "label_encode"}]})


def _classes(run: Path, path: Path) -> list[str]:
    res = runner.invoke(app, ["predict", str(run), str(path)])
    assert res.exit_code == 0, res.output
    return [ln.split("  (")[0] for ln in res.stdout.splitlines() if ln.strip()]


def test_a_run_saves_its_feature_names(csv_run) -> None:
    assert load(csv_run).preprocessor.feature_names == ["a", "b", "code"]


def test_a_header_takes_its_columns_by_name_leaving_the_target_out(csv_run, tmp_path) -> None:
    (tmp_path / "plain.csv").write_text("3,1,10\n,4,x\n5,6,y\n")
    (tmp_path / "named.csv").write_text("y,code,a,b\n0,10,3,1\n1,x,,4\n0,y,5,6\n")
    assert _classes(csv_run, tmp_path / "named.csv") == _classes(csv_run, tmp_path / "plain.csv")


def test_a_header_that_does_not_name_the_columns_is_one_line(csv_run, tmp_path) -> None:
    (tmp_path / "renamed.csv").write_text("A,B,Code\n3,1,10\n")
    line = one_error_line(runner.invoke(app, ["predict", str(csv_run), str(tmp_path / "renamed.csv")]), 2)
    assert line == (f"error: CSV {tmp_path / 'renamed.csv'} line 1 looks like a header but does not name "
                    "the run's columns (a, b, code); name them all, or leave the header out")


def test_a_bad_cell_under_a_header_is_named_by_line_and_column(csv_run, tmp_path) -> None:
    (tmp_path / "bad.csv").write_text("code,b,a\n10,1,3\nx,abc,4\n")
    line = one_error_line(runner.invoke(app, ["predict", str(csv_run), str(tmp_path / "bad.csv")]), 2)
    assert line.startswith(f"error: CSV {tmp_path / 'bad.csv'} line 3, column 'b' holds 'abc', not a number")


def test_channels_last_npy_inputs_of_a_channels_last_run(tmp_path) -> None:
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    x = (rng.integers(0, 120, (60, 6, 6, 3)) + 120 * y[:, None, None, None]).astype(np.uint8)
    np.savez(tmp_path / "images.npz", x=x, y=y)
    run = train_table(tmp_path, {"name": f"npz:{tmp_path / 'images.npz'}"})
    loaded = load(run)
    assert loaded.info.input_shape == (3, 6, 6)
    _, want = loaded.predict(np.ascontiguousarray(x[:5].transpose(0, 3, 1, 2)))
    _, got = loaded.predict(x[:5])  # the Python API takes the training layout too
    assert np.array_equal(got, want)
    np.save(tmp_path / "last.npy", x[:5])
    np.save(tmp_path / "first.npy", np.ascontiguousarray(x[:5].transpose(0, 3, 1, 2)))
    res = {name: runner.invoke(app, ["predict", str(run), str(tmp_path / name)])
           for name in ("last.npy", "first.npy")}
    assert all(r.exit_code == 0 for r in res.values()), [r.output for r in res.values()]
    assert res["last.npy"].stdout == res["first.npy"].stdout
