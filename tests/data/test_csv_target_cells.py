"""csv targets: every row needs one, so a missing-value token is refused in a text target too
(it would become a class 'NA'), and numbers with a few text cells are refused at the first
text cell's line, as a feature column is (a typo made a regression target hundreds of classes)."""

from __future__ import annotations

import pytest

from dlopt.data import load_dataset

from data_helpers import load_error


def _csv(tmp_path, labels: list[str]) -> str:
    p = tmp_path / "t.csv"
    p.write_text("a,y\n" + "".join(f"{i},{v}\n" for i, v in enumerate(labels)))
    return f"csv:{p}"


@pytest.mark.parametrize("token", ["NA", "?", "null", " NaN "])
def test_a_missing_token_in_a_text_target_is_a_missing_target(tmp_path, token):
    labels = [("north", "south")[i % 2] for i in range(30)]
    labels[6] = token
    assert load_error(_csv(tmp_path, labels), target="y") == (
        f"csv file {tmp_path / 't.csv'} line 8, column 'y': the target has 1 missing value(s), e.g. "
        f"{token.strip()!r}; every row needs a target; a class named like a missing value (NA, null, ?, ...) "
        "needs another name")


def test_a_number_target_with_a_text_cell_is_refused_at_its_line(tmp_path):
    labels = [f"{i * 0.37:.2f}" for i in range(40)]
    labels[11], labels[30] = "unknown", "n.a."
    assert load_error(_csv(tmp_path, labels), target="y") == (
        f"csv file {tmp_path / 't.csv'} line 13, column 'y': the target holds numbers but 2 cell(s) are text, "
        "e.g. 'unknown'; allowed: numbers in every row, or text labels in every row (class labels, e.g. c10 "
        "for 10)")


def test_text_labels_with_a_few_numbers_stay_classes(tmp_path):
    labels = [("low", "high")[i % 2] for i in range(30)]
    labels[4] = "3"
    assert load_dataset(_csv(tmp_path, labels), target="y").info.class_names == ["3", "high", "low"]
