"""Writing where it cannot be written: one line, the write's own error, never a traceback."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.errors import RunError
from dlopt.train.checkpoint import atomic_write, write_checkpoint


def test_a_run_dir_that_cannot_be_created_is_one_line_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: ro\ndata: {name: iris}\nmodel: {name: mlp}\ntrain: {epochs: 1}\n")
    res = CliRunner().invoke(app, ["train", str(cfg), "--run-dir", str(blocker / "run")])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "cannot create it" in lines[0] and str(blocker / "run") in lines[0]


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """Writes past ``limit`` bytes fail with EFBIG, as on a full disk."""
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def test_a_first_checkpoint_that_cannot_be_written_says_none_is_kept(tmp_path: Path) -> None:
    with _file_size_limit(1000), pytest.raises(RunError) as err:
        write_checkpoint(tmp_path / "checkpoints", {"model.safetensors": b"x" * 5000}, step=1, epoch=1)
    assert "no checkpoint written yet" in str(err.value) and "previous checkpoint" not in str(err.value)


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A folder on a tmpfs remounted read-only (needs root, as CI runs; chmod does not bind root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    d = tmp_path / "ro"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (d / "f.json").write_text("{}\n")
        subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True, capture_output=True)
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)


def test_an_atomic_write_on_a_read_only_file_system_is_the_writes_error(read_only_dir: Path) -> None:
    with pytest.raises(RunError) as err:
        atomic_write(read_only_dir / "f.json", "{\"a\": 1}\n")
    assert "cannot write" in str(err.value) and "previous file is kept" in str(err.value)
    assert (read_only_dir / "f.json").read_text() == "{}\n"
