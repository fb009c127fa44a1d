"""What the file readers say about a path of the wrong kind: a folder named as a file (and the
reverse), a file that is no .npz archive, a CSV that is not UTF-8."""

from __future__ import annotations

import numpy as np

from data_helpers import load_error


def test_a_directory_named_as_a_file_and_a_file_named_as_a_directory(tmp_path):
    (tmp_path / "rows.csv").write_text("a,y\n1,0\n2,1\n")
    assert load_error(f"csv:{tmp_path}", target="y") == f"{tmp_path} is a directory, not a file"
    assert load_error(f"imagefolder:{tmp_path / 'rows.csv'}") == f"{tmp_path / 'rows.csv'} is a file, not a directory"


def test_a_csv_named_npz_is_no_npz_archive_and_a_npy_says_so(tmp_path):
    (tmp_path / "rows.csv").write_text("a,y\n1,0\n2,1\n")
    assert load_error(f"npz:{tmp_path / 'rows.csv'}") == (
        f"npz file {tmp_path / 'rows.csv'} is not an .npz archive (a zip file of named arrays); "
        "save one with np.savez(path, x=..., y=...)")
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    assert load_error(f"npz:{tmp_path / 'x.npy'}").startswith(
        f"npz file {tmp_path / 'x.npy'} is a single .npy array, not an .npz archive")


def test_a_csv_that_is_not_utf8_names_its_line_and_the_fix(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes("a,y\n1,0\ngrün,1\n".encode("latin-1"))
    assert load_error(f"csv:{p}", target="y") == f"csv file {p} is not UTF-8 text: byte 10 (line 3); save it as UTF-8"
    p.write_bytes(b"\xef\xbb\xbf" + "a,y\n1,0\ngrün,1\n".encode("latin-1"))  # after Excel's byte-order mark
    assert load_error(f"csv:{p}", target="y").endswith("byte 13 (line 3); save it as UTF-8")
