"""Tuning workers on a real PostgreSQL server (a throw-away cluster, see conftest.py): two
`dlopt tune` processes on one study with --trials 20 end with exactly 20 finished trials,
each run by one worker, readable with plain `optuna.load_study`."""

from __future__ import annotations

import re
import subprocess
import sys

import optuna
import yaml

from scale_helpers import worker_env

DONE = ("COMPLETE", "PRUNED")
CONFIG = {
    "name": "pg",
    "data": {"name": "digits"},
    "model": {"name": "mlp", "width": 16, "depth": 1},
    "train": {"epochs": 1, "batch_size": 128, "progress": False, "threads": 1},
    "search": {
        "space": {"train.optim.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
                  "model.width": {"type": "int", "low": 8, "high": 32, "step": 8}},
        "sampler": {"name": "random", "seed": 0}, "pruner": "none", "keep_checkpoints": 1,
        "heartbeat": 0.5, "grace": 5.0,
    },
}


def test_two_workers_on_postgres_finish_exactly_n(postgres_url, tmp_path):
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    cmd = [sys.executable, "-m", "dlopt", "tune", str(config), "--study", "pg-study", "--storage", postgres_url,
           "--trials", "20"]
    procs = [subprocess.Popen(cmd + ["--study-dir", str(tmp_path / f"w{i}")], env=worker_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)

    study = optuna.load_study(study_name="pg-study", storage=postgres_url.replace("postgresql://",
                                                                                  "postgresql+psycopg2://", 1))
    trials = study.trials
    assert len(trials) == 20 and sum(t.state.name in DONE for t in trials) == 20
    assert sorted(t.number for t in trials) == list(range(20))
    # every trial was run by exactly one worker, and both workers took some
    ran = [[int(n) for n in re.findall(r"^trial\s+(\d+)\s", out, flags=re.M)] for out in outs]
    assert sorted(ran[0] + ran[1]) == list(range(20)) and min(map(len, ran)) >= 1
