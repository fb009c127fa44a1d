"""SIGTERM to ``dlopt run`` is handled like Ctrl-C: one line, exit 143, the stage's children
stopped, finished stages kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from dlopt.pipeline import parse_pipeline, run_pipeline

from pipeline_helpers import lenet_base


def _servers(pid: int) -> list[int]:
    """``dlopt serve`` processes whose parent is ``pid`` (from /proc: no psutil here)."""
    out = []
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
                    and b"serve" in (entry / "cmdline").read_bytes()):
                out.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_during_serve_check_stops_the_server_and_exits_143(tmp_path):
    doc = {"name": "term", "base": lenet_base(subset=300, test_subset=50),
           "stages": [{"name": "train"}, {"name": "export", "input": "train"},
                      {"name": "serve_check", "input": "export", "samples": 50}]}
    path, root = tmp_path / "p.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(doc))
    run_pipeline(*parse_pipeline(doc), root=root, report=False)  # train and export are cached below
    cmd = [sys.executable, "-m", "dlopt", "run", str(path), "--run-dir", str(root), "--force", "serve_check",
           "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    end, server = time.monotonic() + 120, None
    while server is None and time.monotonic() < end and proc.poll() is None:
        server = next(iter(_servers(proc.pid)), None)
        time.sleep(0.02)
    assert server is not None, proc.communicate()[1][-800:]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    time.sleep(0.5)
    alive = _alive(server)
    if alive:
        os.kill(server, signal.SIGKILL)
    assert proc.returncode == 143, err[-800:]
    assert not alive
    lines = [line for line in err.splitlines() if not line.startswith("[")]
    assert lines == ["error: stopped by SIGTERM in stage 'serve_check'; finished stages are kept; rerun the "
                     "same dlopt run command to continue"]
    stages = {s["name"] for s in json.loads((root / "results.json").read_text())["stages"]}
    assert stages == {"train", "export"}
