"""``dlopt predict RUN`` on several input files of one kind, or a folder of images: each line
names the file (and row) it is for; one file keeps its numbered lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.data._load import read_raw
from dlopt.train import load

from train_helpers import DATA, MODEL, one_error_line

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("many")
    cfg = {"name": "many", "data": DATA, "model": MODEL,
           "train": {"epochs": 1, "batch_size": 48, "progress": False, "threads": 1}}
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", str(tmp / "c.yaml"), "--run-dir", str(tmp / "run"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    return tmp / "run"


@pytest.fixture(scope="module")
def raw() -> np.ndarray:
    return read_raw("mnist").x_test[:5]  # uint8 (5, 1, 28, 28), as the dataset stores it


def _lines(*args: str) -> list[str]:
    res = runner.invoke(app, ["predict", *args, "--top", "1"])
    assert res.exit_code == 0, res.output
    return [ln.split("  (")[0] for ln in res.stdout.splitlines()]


def _classes(run: Path, x: np.ndarray) -> list[str]:
    pred, _ = load(run).predict(x)
    return [f"class {p}" for p in pred]


def test_several_images_and_a_folder_name_each_file(run, raw, tmp_path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, name in enumerate(("b.png", "a.png", "c.jpg")):  # listed out of name order
        Image.fromarray(raw[i, 0]).save(folder / name)
    (folder / "notes.txt").write_text("not an image")  # left out, as are hidden files
    (folder / ".hidden.png").write_bytes(b"")
    want = _classes(run, raw[[1, 0, 2]])  # a.png, b.png, c.jpg
    by_name = [folder / "a.png", folder / "b.png", folder / "c.jpg"]
    assert _lines(str(run), str(folder)) == [f"{f}: {c}" for f, c in zip(by_name, want)]
    assert _lines(str(run), str(folder / "c.jpg"), str(folder / "a.png")) == [
        f"{folder / 'c.jpg'}: {want[2]}", f"{folder / 'a.png'}: {want[0]}"]
    assert _lines(str(run), str(folder / "a.png")) == [f"0: {want[0]}"]  # one file: as before


def test_several_arrays_name_file_and_row(run, raw, tmp_path) -> None:
    np.save(tmp_path / "x.npy", raw[:3])
    np.savetxt(tmp_path / "y.csv", raw[3:].reshape(2, -1), fmt="%d", delimiter=",")
    np.save(tmp_path / "y.npy", raw[3:])
    want = _classes(run, raw)
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    assert _lines(str(run), str(x), str(y)) == [f"{x}[{i}]: {want[i]}" for i in range(3)] + [
        f"{y}[{i}]: {want[3 + i]}" for i in range(2)]
    assert _lines(str(run), str(x)) == [f"{i}: {want[i]}" for i in range(3)]
    rows = tmp_path / "y.csv"
    assert _lines(str(run), str(rows), str(rows))[1] == f"{rows}[1]: {want[4]}"


def _error(run: Path, *paths: Path) -> str:
    return one_error_line(runner.invoke(app, ["predict", str(run), *map(str, paths)]), 2)


def test_mixed_kinds_and_folders_without_images_are_one_line(run, raw, tmp_path) -> None:
    np.save(tmp_path / "x.npy", raw[:1])
    Image.fromarray(raw[0, 0]).save(tmp_path / "a.png")
    line = _error(run, tmp_path / "a.png", tmp_path / "x.npy")
    assert "inputs of mixed kinds" in line and "allowed: all images, all .npy arrays or all CSV files" in line
    (tmp_path / "classes" / "zero").mkdir(parents=True)
    line = _error(run, tmp_path / "classes")
    assert line == (f"error: {tmp_path / 'classes'}: a folder without image files (.png, .jpg, .jpeg, .bmp, "
                    ".gif, .tif, .tiff, .webp); its sub-folders are not searched")
    line = _error(run, tmp_path / "a.png", tmp_path / "no.png")
    assert line == f"error: input file not found: {tmp_path / 'no.png'}"
