"""DDP under torchrun on CPU (gloo): 2 processes end with identical weights, equal to one
process with the same global batch and seed; the checkpoint resumes in another rank count."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from scale_helpers import assert_close_weights as _close, torchrun_fit
from ddp_fit import fit


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One 2-process run of ddp_fit.py: (weights dir, run dir)."""
    out = tmp_path_factory.mktemp("ddp")
    run_dir = out / "run"
    torchrun_fit(out, run_dir)
    return out, run_dir


def test_two_ranks_match_each_other_and_one_process(ddp_run, tmp_path):
    out, run_dir = ddp_run
    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    single = fit(tmp_path / "single", tmp_path)
    assert single.history[-1]["train_loss"] < single.history[0]["train_loss"]  # it learned something
    _close(r0, load_file(str(tmp_path / "rank0.safetensors")))
    # the logged train loss is the mean over both ranks' batches = the one-process value
    ddp_rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ddp_rows] == [r["step"] for r in single.history] == [9, 18]
    for a, b in zip(ddp_rows, single.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"])


def test_only_rank0_wrote(ddp_run):
    out, run_dir = ddp_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["steps"] == 18
    assert (run_dir / "model.safetensors").exists()
    # one checkpoint chain: rank 1 wrote nothing beside rank 0
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.is_symlink()) == ["best", "last"]


def test_resume_two_rank_checkpoint_in_one_process(ddp_run, tmp_path):
    """Epochs 1-2 in 2 processes + epoch 3 in 1 process == 3 epochs in 1 process."""
    out, run_dir = ddp_run
    resumed = fit(run_dir, tmp_path / "a", resume=True, epochs=3)
    straight = fit(tmp_path / "straight", tmp_path / "b", epochs=3)
    assert resumed.summary["steps"] == straight.summary["steps"] == 27
    _close(load_file(str(tmp_path / "a" / "rank0.safetensors")), load_file(str(tmp_path / "b" / "rank0.safetensors")))


def test_only_the_saving_rank_says_it_saved_a_checkpoint(tmp_path):
    """SIGTERM on rank 1 stops both ranks after one agreed step; rank 1's own line (what a
    plain torchrun's failure report shows) said "checkpoint saved in ..." though it saves nothing."""
    torchrun_fit(tmp_path, tmp_path / "run", term_at=[3, 1])
    rank0, rank1 = ((tmp_path / f"stopped{r}.txt").read_text() for r in (0, 1))
    assert f"checkpoint saved in {tmp_path / 'run' / 'checkpoints' / 'last'}" in rank0
    assert "checkpoint saved" not in rank1 and "rank 0 saves the checkpoint" in rank1
    assert rank1.endswith("continue with --resume")
