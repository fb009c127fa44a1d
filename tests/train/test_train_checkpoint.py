"""Checkpoint files: atomic writes, interrupted saves, tampering, truncation, the run
directory rules, and that nothing non-finite is ever written."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

from dlopt.errors import ConfigError, NonFiniteError
from dlopt.train import CheckpointError, load, read_checkpoint, train_run
from dlopt.train import checkpoint as io

from train_helpers import assert_same_weights, tiny_config


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run (checkpoints every 4 steps)."""
    d = tmp_path_factory.mktemp("ckpt") / "run"
    train_run(tiny_config(checkpoint={"every_steps": 4}), run_dir=d)
    return d


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst


def test_atomic_write_replaces_without_leftovers(tmp_path) -> None:
    f = tmp_path / "a.json"
    io.atomic_write(f, "old")
    io.atomic_write(f, b"new")
    assert f.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_layout_last_best_and_manifest(finished) -> None:
    ck = finished / "checkpoints"
    assert (ck / "last").is_symlink() and (ck / "best").is_symlink()
    c = read_checkpoint(finished)
    assert c.manifest["step"] == 12 and c.manifest["epoch"] == 2
    assert set(c.manifest["files"]) >= {"model.safetensors", "state.pt"}
    # only checkpoints that a link points to are kept
    kept = {p.name for p in ck.iterdir() if not p.is_symlink()}
    assert kept == {os.readlink(ck / "last"), os.readlink(ck / "best")}


def test_state_file_loads_with_weights_only(finished) -> None:
    state = torch.load(finished / "checkpoints" / "last" / "state.pt", weights_only=True)
    assert {"optimizer", "rng", "loader", "counters", "handlers"} <= set(state)


class _Interrupting(Mapping):
    """Files whose iteration is interrupted after the first one (a crash mid-save)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def __getitem__(self, k: str) -> bytes:
        return self.files[k]

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        yield next(iter(self.files))
        raise KeyboardInterrupt

    def items(self):  # type: ignore[override]
        return ((k, self.files[k]) for k in self)


def test_interrupted_save_leaves_previous_checkpoint_loadable(finished, tmp_path) -> None:
    run = _copy_run(finished, tmp_path / "run")
    ck = run / "checkpoints"
    before = read_checkpoint(run)
    files = {n: (before.path / n).read_bytes() for n in before.manifest["files"]}
    with pytest.raises(KeyboardInterrupt):
        io.write_checkpoint(ck, _Interrupting(files), step=99, epoch=9)
    # a hard kill leaves debris instead of cleaning up: simulate that too
    (ck / ".tmp-dead00").mkdir()
    (ck / ".tmp-dead00" / "model.safetensors").write_bytes(b"partial")
    (ck / "step-00000099-dead00").mkdir()
    after = read_checkpoint(run)
    assert after.path == before.path and after.manifest == before.manifest
    assert_same_weights(after.weights, before.weights)
    # the next successful save removes the debris
    new = io.write_checkpoint(ck, files, step=100, epoch=9)
    io.point(ck, "last", new)
    io.cleanup(ck)
    names = {p.name for p in ck.iterdir()}
    assert ".tmp-dead00" not in names and "step-00000099-dead00" not in names
    assert read_checkpoint(run).manifest["step"] == 100


@pytest.mark.parametrize("name", ["model.safetensors", "state.pt"])
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_checkpoint_is_a_clear_error_naming_the_file(finished, tmp_path, name, damage) -> None:
    run = _copy_run(finished, tmp_path / "run")
    f = run / "checkpoints" / "last" / name
    data = bytearray(f.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=name):
        read_checkpoint(run)
    with pytest.raises(CheckpointError, match=name):
        train_run(tiny_config(checkpoint={"every_steps": 4}, epochs=3), run_dir=run, resume=True)


def test_missing_or_corrupt_manifest(finished, tmp_path) -> None:
    run = _copy_run(finished, tmp_path / "run")
    last = run / "checkpoints" / "last"
    (last / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest"):
        read_checkpoint(run)
    (last / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        read_checkpoint(run)


def test_load_run_and_checkpoint_give_the_same_model(finished) -> None:
    a, b = load(finished), load(finished / "checkpoints" / "last")
    assert_same_weights(a.model.state_dict(), b.model.state_dict())


def test_nonfinite_parameters_are_never_saved(tmp_path) -> None:
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.bias[1] = float("inf")
    with pytest.raises(NonFiniteError, match="'bias'"):
        io.assert_finite(model, step=7)


def test_run_dir_rules(finished, tmp_path) -> None:
    cfg = tiny_config(checkpoint={"every_steps": 4})
    with pytest.raises(ConfigError, match="not empty.*--resume.*--overwrite"):
        train_run(cfg, run_dir=finished)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_run(cfg, run_dir=tmp_path / "empty", resume=True)
    run = _copy_run(finished, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"train.optim.lr was 0.001, now 0.5"):
        train_run(tiny_config(checkpoint={"every_steps": 4}, optim={"lr": 0.5}), run_dir=run, resume=True)
    res = train_run(cfg, run_dir=run, overwrite=True)
    assert res.summary["steps"] == 12


def test_resume_of_a_finished_run_can_extend_epochs(finished, tmp_path) -> None:
    run = _copy_run(finished, tmp_path / "run")
    res = train_run(tiny_config(checkpoint={"every_steps": 4}, epochs=3), run_dir=run, resume=True)
    assert res.summary["epochs"] == 3 and [r["epoch"] for r in res.history] == [1, 2, 3]


def test_kill_between_best_and_last_swaps_resumes_exactly(tmp_path, monkeypatch) -> None:
    """The epoch-end save repoints ``best`` then ``last``; dying between the two swaps must
    resume to the same best weights as an uninterrupted run (``last`` stays behind, so the
    resumed run redoes that save)."""
    from train_helpers import Crash, weights

    cfg = tiny_config(metric="loss", checkpoint={"every_steps": 4})
    full = train_run(cfg, run_dir=tmp_path / "full")
    assert full.summary["best_epoch"] == 2

    real_point = io.point

    def dying_point(root, link, target):
        if link == "last" and (Path(root) / "best").is_symlink() and os.readlink(Path(root) / "best") == target.name \
                and target.name.startswith("step-00000012"):
            raise Crash("killed between the best and last swaps")
        real_point(root, link, target)

    monkeypatch.setattr(io, "point", dying_point)
    with pytest.raises(Crash):
        train_run(cfg, run_dir=tmp_path / "resumed")
    monkeypatch.setattr(io, "point", real_point)
    behind = read_checkpoint(tmp_path / "resumed").manifest  # the step-12 batch-end save
    assert (behind["step"], behind["epoch"]) == (12, 1)
    resumed = train_run(cfg, run_dir=tmp_path / "resumed", resume=True)
    assert resumed.summary["best_epoch"] == 2
    assert_same_weights(weights(full.run_dir), weights(resumed.run_dir))


class _ScriptedLoss:
    """Sets ``val_loss`` per step before Checkpointing reads it, so which epoch is best is known."""

    order = 900

    def __init__(self, by_step: dict[int, float]) -> None:
        self.by_step = by_step

    def on_epoch_end(self, state) -> None:
        state.metrics["val_loss"] = state.history[-1]["val_loss"] = self.by_step[state.step]


def test_a_raised_budget_forgets_the_best_of_the_cut_it_continues(tmp_path) -> None:
    """Cut at step 9, that early close scored best; the run resumed to 12 never made that
    close, so its best is epoch 1 (step 6) as for the run trained to 12 at once."""
    from train_helpers import weights

    losses = {6: 1.0, 9: 0.5, 12: 2.0}
    cfg = tiny_config(metric="loss", max_steps=12)
    full = train_run(cfg, run_dir=tmp_path / "full", callbacks=[_ScriptedLoss(losses)])
    cut = train_run(tiny_config(metric="loss", max_steps=9), run_dir=tmp_path / "cut",
                    callbacks=[_ScriptedLoss(losses)])
    assert cut.summary["best_epoch"] == 2
    raised = train_run(cfg, run_dir=tmp_path / "cut", callbacks=[_ScriptedLoss(losses)], resume=True)
    assert full.summary["best_epoch"] == raised.summary["best_epoch"] == 1
    assert read_checkpoint(tmp_path / "cut" / "checkpoints" / "best").manifest["step"] == 6
    assert_same_weights(weights(full.run_dir), weights(raised.run_dir))
    assert not (tmp_path / "cut" / "checkpoints" / "open").exists()  # gone once the run went past it


class _ScriptedScores(_ScriptedLoss):
    """Every epoch scores val_accuracy 1.0 (saturated); ``val_loss`` per step as scripted."""

    def on_epoch_end(self, state) -> None:
        super().on_epoch_end(state)
        state.metrics["val_accuracy"] = state.history[-1]["val_accuracy"] = 1.0


def test_a_tie_on_accuracy_goes_to_the_lower_val_loss_also_after_resume(tmp_path) -> None:
    """Crashed in epoch 3 and resumed: the best epoch's val_loss comes back with the checkpoint,
    so epoch 3 (tied on accuracy, lower loss) replaces epoch 2 as an uninterrupted run does."""
    from train_helpers import Crash, StopAt, weights

    losses = {6: 0.5, 12: 0.2, 18: 0.1}
    cfg = tiny_config(epochs=3)
    with pytest.raises(Crash):
        train_run(cfg, run_dir=tmp_path / "r", callbacks=[_ScriptedScores(losses), StopAt(13)])
    resumed = train_run(cfg, run_dir=tmp_path / "r", callbacks=[_ScriptedScores(losses)], resume=True)
    assert resumed.summary["best_epoch"] == 3 and resumed.summary["val"]["loss"] == 0.1
    best = read_checkpoint(tmp_path / "r" / "checkpoints" / "best")
    assert best.manifest["epoch"] == 3
    assert_same_weights(weights(resumed.run_dir), best.weights)
