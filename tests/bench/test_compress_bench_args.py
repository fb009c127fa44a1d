"""bench/compress.py refuses a bad --student-epochs, --student, --width or --round-to in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_EPOCHS = "is invalid; allowed: an integer >= 1"
_STUDENT = "is invalid; allowed: a JSON object with a model name"
_WIDTH = "is invalid; allowed: a number > 0"


@pytest.mark.parametrize("flag, value, message", [
    ("--student-epochs", "0", f"--student-epochs=0 {_EPOCHS}"),
    ("--student-epochs", "-3", f"--student-epochs=-3 {_EPOCHS}"),
    ("--student", "{resnet", f"--student='{{resnet' {_STUDENT}"),
    ("--student", "[1, 2]", f"--student='[1, 2]' {_STUDENT}"),
    ("--student", '{"depth": 8}', f"--student='{{\"depth\": 8}}' {_STUDENT}"),
    ("--width", "0", f"--width=0 {_WIDTH}"),
    ("--width", "-1.5", f"--width=-1.5 {_WIDTH}"),
    ("--round-to", "0", "--round-to=0 is invalid; allowed: an integer >= 1 (1: no rounding)"),
])
def test_bad_argument_is_one_line_exit_2(flag: str, value: str, message: str) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "compress.py"), flag, value],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert message in out.stderr
    assert "Traceback" not in out.stderr
