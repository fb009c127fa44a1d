"""The small pure parts: the world from torchrun's environment, batch and lr rules, the
restart decision, and the CLI's one-line refusals (no processes started)."""

from __future__ import annotations

import math
import signal
from types import SimpleNamespace

import pytest
import torch
import yaml
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.config import parse_config
from dlopt.errors import ConfigError
from dlopt.train.callbacks import Terminated
from dlopt.train.distributed import (World, _group_error, _restart_flags, _signal_error, check_supported,
                                     env_world)

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


def _failed(*codes: int) -> list:
    return [(rank, SimpleNamespace(exitcode=code)) for rank, code in enumerate(codes)]


def test_launcher_exit_code_follows_the_processes():
    """torchrun ends the survivors with SIGTERM (-15): the code of those that failed by
    themselves decides, as in one process."""
    refused = _group_error(_failed(-signal.SIGTERM, 2), 2, 0)
    assert refused.exit_code == 2 and "1 of 2 processes refused the run" in str(refused)
    assert _group_error(_failed(143, 143), 2, 0).exit_code == 143
    crashed = _group_error(_failed(1, -signal.SIGKILL), 2, 1)
    assert crashed.exit_code == 1 and "first: rank 1 (signal 9)" in str(crashed)
    assert isinstance(_signal_error(signal.SIGTERM), Terminated)
    assert isinstance(_signal_error(signal.SIGINT), KeyboardInterrupt)  # the CLI's "interrupted", 130
