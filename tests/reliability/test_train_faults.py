"""Training under faults, at CI sizes (the bench runs the same scenarios longer): SIGKILL
and resume, kills during checkpoint saves, a full disk, SIGTERM, NaN/Inf, determinism."""

from __future__ import annotations

import signal

import pytest

import rel_train


@pytest.mark.slow
def test_3_sigkills_and_a_sigterm_then_resume_is_bitwise_equal() -> None:
    """Items 1 and 3 at CI size in one chain (the bench runs 20 kills and 5 stops apart)."""
    kill, term = signal.SIGKILL, signal.SIGTERM
    r = rel_train.interruptions([kill, term, kill, kill])
    assert r["passed"], r["failures"]
    assert r["signals"] == ["SIGKILL", "SIGTERM", "SIGKILL", "SIGKILL"]
    assert r["bitwise_equal"] == {"model": True, "optimizer": True, "rng": True, "other": True}


def test_kill_during_save_5_times_last_checkpoint_always_loads() -> None:
    r = rel_train.kill_during_save(5)
    assert r["passed"], r["failures"]


def test_full_disk_is_one_line_exit_1_and_keeps_the_checkpoint() -> None:
    r = rel_train.full_disk()
    assert r["passed"], r["failures"]
    assert r["message"].startswith("error: cannot write") and "previous checkpoint is kept" in r["message"]


def test_nan_inf_and_huge_lr_stop_at_the_step_and_clipping_holds() -> None:
    r = rel_train.non_finite()
    assert r["passed"], r["failures"]
    assert r["clip_1"]["max_grad_norm"] <= 1 + 1e-6 < r["clip_1"]["max_before_clip"]


def test_seeded_deterministic_runs_are_equal_and_seeds_differ() -> None:
    r = rel_train.determinism()
    assert r["passed"], r["failures"]
