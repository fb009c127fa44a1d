"""``dlopt eval RUN --data csv:FILE`` takes the run's features by name, as ``dlopt predict``
takes a header's: a file of other column order scores the same, one lacking a name is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from train_helpers import one_error_line, train_table

runner = CliRunner()


def _rows(order: tuple[int, ...]) -> str:
    # 'a' decides the label, 'b' is noise of another scale: swapped columns score differently
    cells = [(f"{i * 0.5:.1f}", f"{(i * 37) % 11 - 5}", "xyz"[i % 3], str(int(i >= 40))) for i in range(80)]
    return "".join(",".join(c[j] for j in order) + "\n" for c in cells)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("eval")
    (tmp / "train.csv").write_text("a,b,code,y\n" + _rows((0, 1, 2, 3)))
    return train_table(tmp, {"name": f"csv:{tmp / 'train.csv'}", "target": "y",
                             "preprocess": [{"op": "zscore"}, {"op": "label_encode"}]})


def _metrics(run: Path, data: Path) -> str:
    res = runner.invoke(app, ["eval", str(run), "--data", f"csv:{data}"])
    assert res.exit_code == 0, res.output
    return res.stdout


def test_columns_in_another_order_are_taken_by_name(run, tmp_path):
    (tmp_path / "swapped.csv").write_text("b,a,code,y\n" + _rows((1, 0, 2, 3)))
    (tmp_path / "more.csv").write_text("note,code,a,b,y\n" + _rows((2, 2, 0, 1, 3)))  # 'note' left out
    expected = _metrics(run, run.parent / "train.csv")
    assert _metrics(run, tmp_path / "swapped.csv") == expected
    assert _metrics(run, tmp_path / "more.csv") == expected


def test_a_file_without_the_run_s_feature_names_is_one_line(run, tmp_path):
    (tmp_path / "renamed.csv").write_text("x1,x2,x3,y\n" + _rows((0, 1, 2, 3)))
    line = one_error_line(runner.invoke(app, ["eval", str(run), "--data", f"csv:{tmp_path / 'renamed.csv'}"]), 2)
    assert line == (f"error: dataset csv:{tmp_path / 'renamed.csv'} has no column(s) 'a', 'b', 'code'; the run "
                    "takes its features by name: a, b, code (any order; other columns are left out)")
