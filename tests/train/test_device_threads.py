"""Thread settings under torchrun: the processes of one machine share its CPUs."""

from __future__ import annotations

import logging

import pytest
import torch

from dlopt.train.device import environment, usable_cpus


def _warnings(caplog, threads: int) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dlopt.train.device"), environment(threads=threads):
        assert torch.get_num_threads() == threads
    return [r.getMessage() for r in caplog.records]


def test_threads_times_local_processes_over_cpus_warns_once(monkeypatch, caplog):
    cpus = usable_cpus()
    assert _warnings(caplog, cpus) == []  # one process: all CPUs are its own
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    (line,) = _warnings(caplog, cpus)
    assert f"threads={cpus} x 2 processes is more than the {cpus} CPUs" in line
    assert f"--threads {max(1, cpus // 2)} or fewer" in line
    monkeypatch.setenv("LOCAL_RANK", "1")  # the machine's other processes stay quiet
    assert _warnings(caplog, cpus) == []


@pytest.mark.parametrize("procs", ["1", "2"])
def test_threads_that_fit_do_not_warn(monkeypatch, caplog, procs):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", procs)
    assert _warnings(caplog, max(1, usable_cpus() // int(procs))) == []
