"""bench/compress.py refuses a bad --student-epochs or --student in one line, before any training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", ["0", "-3"])
def test_bad_student_epochs_is_one_line_exit_2(value: str) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "compress.py"), "--student-epochs", value],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert f"--student-epochs={value} is invalid; allowed: an integer >= 1" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("value", ["{resnet", "[1, 2]", '{"depth": 8}'])
def test_bad_student_is_one_line_exit_2(value: str) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "compress.py"), "--student", value],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert f"--student={value!r} is invalid; allowed: a JSON object with a model name" in out.stderr
    assert "Traceback" not in out.stderr
