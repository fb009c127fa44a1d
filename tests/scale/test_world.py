"""The small pure parts: the world from torchrun's environment, batch and lr rules, the
restart decision, and the CLI's one-line refusals (no processes started)."""

from __future__ import annotations

import logging
import math
import signal
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from torch.distributed.elastic.multiprocessing.errors import ProcessFailure
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.config import parse_config
from dlopt.errors import ConfigError, RunError
from dlopt.train.callbacks import Terminated
from dlopt.train.device import environment, usable_cpus
from dlopt.train.distributed import (LAUNCHER_ENV, World, _first_line, _group_error, _restart_flags, _signal_error,
                                     check_supported, env_world, record_failure)

runner = CliRunner()


def test_env_world_defaults_to_one_process():
    w = env_world({})
    assert (w.rank, w.world_size, w.enabled, w.is_main) == (0, 1, False, True)
    w = env_world({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "TORCHELASTIC_RESTART_COUNT": "3"})
    assert (w.rank, w.world_size, w.local_rank, w.restart, w.is_main) == (1, 2, 1, 3, False)


@pytest.mark.parametrize("env", [{"RANK": "2", "WORLD_SIZE": "2"}, {"RANK": "x"}])
def test_env_world_rejects_bad_values(env):
    with pytest.raises(ConfigError, match="RANK"):
        env_world(env)


def test_global_batch_and_lr_scaling():
    w = World(rank=0, world_size=4)
    assert w.local_batch(256, "global") == 64 and w.global_batch(256, "global") == 256
    assert w.local_batch(64, "per_rank") == 64 and w.global_batch(64, "per_rank") == 256
    assert w.lr_factor(256, "global", "linear") == 1.0  # the step's math does not change
    assert w.lr_factor(64, "per_rank", "linear") == 4.0
    assert w.lr_factor(64, "per_rank", "sqrt") == math.sqrt(4)
    assert w.lr_factor(64, "per_rank", "none") == 1.0
    with pytest.raises(ConfigError, match="divisible by the 4 processes"):
        w.local_batch(90, "global")


def test_distributed_section_validated():
    cfg = parse_config({"train": {"distributed": {"batch": "per_rank", "lr_scaling": "sqrt"}}})
    assert cfg.train.distributed.lr_scaling == "sqrt"
    with pytest.raises(ConfigError, match="lr_scaling"):
        parse_config({"train": {"distributed": {"lr_scaling": "cubic"}}})


def test_unsupported_combinations_refused():
    two = World(world_size=2)
    with pytest.raises(ConfigError, match="train.cv"):
        check_supported(two, cv=3, unfreeze_at_epoch=None)
    with pytest.raises(ConfigError, match="unfreeze_at_epoch"):
        check_supported(two, cv=None, unfreeze_at_epoch=1)
    check_supported(World(), cv=3, unfreeze_at_epoch=1)  # one process: anything goes


def test_restart_resumes_checkpoint_or_restarts_own_run_only(tmp_path):
    text = "name: a\n"
    assert _restart_flags(tmp_path, False, False, text) == (False, False)  # empty: as asked
    (tmp_path / "config.yaml").write_text("name: someone-else\n")
    assert _restart_flags(tmp_path, False, False, text) == (False, False)  # never wipe another run
    (tmp_path / "config.yaml").write_text(text)
    assert _restart_flags(tmp_path, False, False, text) == (False, True)  # our run, no checkpoint yet
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last").mkdir()
    assert _restart_flags(tmp_path, False, True, text) == (True, False)


def _config(tmp_path, **train):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"data": {"name": "iris"}, "model": {"name": "mlp"}, "train": train}))
    return str(p)


@pytest.mark.parametrize("args, message", [
    (["--max-restarts", "1"], "--max-restarts needs --nproc"),
    (["--nproc", "2", "--cv", "3"], "train.cv"),
    (["--nproc", "3", "--set", "train.batch_size=64"], "divisible by the 3 processes"),
    (["--nproc", "2", "--device", "cpu", "--set", "train.distributed.backend=nccl"], "nccl needs CUDA"),
])
def test_cli_refuses_before_starting_processes(tmp_path, args, message):
    res = runner.invoke(app, ["train", _config(tmp_path), "--run-dir", str(tmp_path / "r"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine can run 2 CUDA processes")
def test_cli_refuses_cuda_processes_without_gpus(tmp_path):
    """Each process would fail alone (once per restart, exit 1): refused up front instead."""
    res = runner.invoke(app, ["train", _config(tmp_path), "--run-dir", str(tmp_path / "r"), "--nproc", "2",
                              "--max-restarts", "2", "--device", "cuda"])
    assert res.exit_code == 2, res.output
    assert res.output.count("error:") == 1 and "Traceback" not in res.output
    assert "cuda" in res.output and not (tmp_path / "r").exists()


def _failed(tmp_path, monkeypatch, *outcomes: tuple[int, str | None]) -> list:
    """torchrun's record of each rank: its exit code and the error line it reported through
    ``record_failure`` (None: it said nothing, e.g. killed)."""
    failures, group = [], Path(tempfile.mkdtemp(dir=tmp_path))  # fresh files for every group
    for rank, (code, line) in enumerate(outcomes):
        path = group / f"error-{rank}.json"
        if line is not None:
            monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))
            record_failure(line, code)
        failures.append((rank, ProcessFailure(local_rank=rank, pid=1, exitcode=code, error_file=str(path))))
    return failures


METRIC = "train.metric='r2' is not computed on validation for classification"
LOST = ("rank 0: lost the other processes (Read error [127.0.0.1]:1: Connection reset by peer); "
        "with --max-restarts torchrun restarts the group from the last checkpoint")
STOPPED = "stopped by SIGTERM (on another process) at step 7 (epoch 2, batch 3); checkpoint saved in r/last"


def test_launcher_reports_one_line_for_the_group(tmp_path, monkeypatch):
    """The processes' lines reach the launcher (torchrun's error files), which picks the one
    that says why: rank 0's own error, else the killed process (not rank 0's lost peer), with
    the exit code a process alone would give."""
    refused = _group_error(_failed(tmp_path, monkeypatch, (2, METRIC), (2, METRIC)), 2, 0)
    assert isinstance(refused, ConfigError) and str(refused) == METRIC
    stopped = _group_error(_failed(tmp_path, monkeypatch, (143, STOPPED), (143, "stopped by SIGTERM at step 7")), 2, 0)
    assert isinstance(stopped, Terminated) and str(stopped) == STOPPED
    lost = _group_error(_failed(tmp_path, monkeypatch, (1, LOST), (-signal.SIGKILL, None)), 2, 1)
    assert type(lost) is RunError and str(lost) == (
        "process rank 1 of 2 was killed (signal 9, SIGKILL) and the group stopped after 1 restart(s); "
        "continue with --resume from its last checkpoint, if one was saved")
    # torchrun stopped rank 0 (-15) before it said anything: rank 1's own line (a crash: named)
    alone = _group_error(_failed(tmp_path, monkeypatch, (-signal.SIGTERM, None), (2, METRIC)), 2, 0)
    assert isinstance(alone, ConfigError) and str(alone) == METRIC
    crash = _group_error(_failed(tmp_path, monkeypatch, (-signal.SIGTERM, None), (1, "ValueError: x")), 2, 0)
    assert type(crash) is RunError and str(crash) == "rank 1: ValueError: x"


def test_launcher_exit_code_follows_the_processes(tmp_path, monkeypatch):
    """No process said why: the code of those that failed by themselves decides."""
    refused = _group_error(_failed(tmp_path, monkeypatch, (-signal.SIGTERM, None), (2, None)), 2, 0)
    assert refused.exit_code == 2 and "1 of 2 processes failed after 0 restart(s); first: rank 1" in str(refused)
    assert _group_error(_failed(tmp_path, monkeypatch, (143, None), (143, None)), 2, 0).exit_code == 143
    crashed = _group_error(_failed(tmp_path, monkeypatch, (1, None), (-signal.SIGKILL, None)), 2, 1)
    assert crashed.exit_code == 1 and "rank 1 of 2 was killed (signal 9, SIGKILL)" in str(crashed)
    assert isinstance(_signal_error(signal.SIGTERM), Terminated)
    assert str(_signal_error(signal.SIGTERM, (STOPPED, 143))) == STOPPED  # rank 0's: where it saved
    assert isinstance(_signal_error(signal.SIGINT), KeyboardInterrupt)  # the CLI's "interrupted", 130


def test_only_rank_0_of_a_plain_torchrun_prints_its_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(tmp_path / "e.json"))
    monkeypatch.setenv("RANK", "0")
    assert record_failure(METRIC, 2)
    monkeypatch.setenv(LAUNCHER_ENV, "1")  # dlopt train --nproc: the launcher prints for the group
    assert not record_failure(METRIC, 2)
    monkeypatch.delenv(LAUNCHER_ENV)
    monkeypatch.setenv("RANK", "1")
    assert not record_failure(METRIC, 2)
    assert ProcessFailure(local_rank=1, pid=1, exitcode=2, error_file=str(tmp_path / "e.json")).message == METRIC
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE")  # not torchrun's process: nowhere else to go
    assert record_failure(METRIC, 2)


def test_lost_peer_line_drops_gloo_source_location():
    gloo = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
                        "[127.0.0.1]:15546: Connection reset by peer. This may indicate a possible hang")
    assert _first_line(gloo) == "Read error [127.0.0.1]:15546: Connection reset by peer"


@pytest.mark.parametrize("procs, message", [
    (1, "threads={t} is more than the {c} CPUs this process may use; torch's threads will contend "
        "(use --threads {c} or fewer)"),
    (2, "threads={t} x 2 processes is more than the {c} CPUs they share; torch's threads will contend "
        "(use --threads {e} or fewer)"),
])
def test_oversubscribed_threads_warning_reads(monkeypatch, caplog, procs, message):
    cpus = usable_cpus()
    threads = cpus // procs + 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(procs))
    monkeypatch.setenv("LOCAL_RANK", "0")
    with caplog.at_level(logging.WARNING, logger="dlopt.train.device"), environment(threads=threads):
        pass
    expected = message.format(t=threads, c=cpus, e=max(1, cpus // procs))
    assert [r.getMessage() for r in caplog.records] == [expected]
