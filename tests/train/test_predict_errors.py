"""``dlopt predict`` on several inputs is all or nothing: every file is read and predicted
before the first line is printed, and an error line names the file it is about."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.train import train_run

from train_helpers import one_error_line, tiny_config

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_run(tiny_config(epochs=1), run_dir=tmp_path_factory.mktemp("pe") / "run").run_dir


def test_a_file_the_model_refuses_after_good_ones_prints_nothing_and_is_named(run, tmp_path) -> None:
    # b.npy reads well but its samples are not the run's shape: the error came from the model's
    # preprocessing, after a.npy's lines were printed, and did not say which file it was
    good, bad = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(good, np.zeros((2, 28, 28), np.uint8))
    np.save(bad, np.zeros((2, 5, 5), np.uint8))
    line = one_error_line(runner.invoke(app, ["predict", str(run), str(good), str(bad)]), 2)
    assert line.startswith(f"error: {bad}: ") and "(5, 5)" in line


def test_a_corrupt_image_in_a_later_batch_prints_nothing(run, tmp_path, monkeypatch) -> None:
    import dlopt.cli.train as cli_train

    monkeypatch.setattr(cli_train, "_IMAGES_PER_CALL", 2)  # 3 images: the corrupt one is in batch 2
    files = [tmp_path / f"{i}.png" for i in range(3)]
    for f in files[:2]:
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(f)
    files[2].write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    line = one_error_line(runner.invoke(app, ["predict", str(run), *map(str, files)]), 2)
    assert str(files[2]) in line
