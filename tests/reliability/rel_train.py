"""Training faults: SIGKILL and resume, kills during a checkpoint save, a full disk, SIGTERM,
non-finite losses/gradients, determinism. Real runs on an MNIST slice, real processes."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from rel_common import (STEPS_PER_EPOCH, checkpoint_differences, fresh_dir, last_step, reference_run, result,
                        run_config, start_train, wait_for, write_yaml)


def _epochs_for(interruptions: int) -> int:
    # room for every interruption to land before the end, 3 epochs at least
    return max(3, -(-(2 * interruptions + 4) // STEPS_PER_EPOCH))


def _finish_and_compare(cfg_file: Path, run: Path, reference: Path, failures: list[str]) -> dict[str, bool]:
    proc = start_train(cfg_file, run, resume=True)
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        failures.append(f"final resume exited {proc.returncode}: {err.strip()[-300:]}")
        return {}
    diffs = checkpoint_differences(reference, run)
    for part, where in diffs.items():
        if where:
            failures.append(f"{part} differs from the uninterrupted run at {where[:3]}")
    return {part: not where for part, where in diffs.items()}


def _check_term(err: str, rc: int, seen: int, saved: int) -> str | None:
    """None when a SIGTERM ended the run as promised: exit 143, one line naming the saved
    step, the checkpoint at the step boundary after the signal."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if rc != 143 or "Traceback" in err or len(lines) != 1:
        return f"exit {rc}, stderr {err.strip()[-300:]!r}"
    if f"at step {saved} " not in lines[0] or "--resume" not in lines[0]:
        return f"message does not name the saved step {saved}: {lines[0]}"
    if not 0 <= saved - seen <= 2:  # the step in flight (plus one begun while signalling)
        return f"signalled at step {seen}, checkpoint at step {saved}"
    return None


def interruptions(signals: list[int], *, seed: int = 11) -> dict[str, Any]:
    """Interrupt ``python -m dlopt train`` with each of ``signals`` in turn (SIGKILL or
    SIGTERM) at seeded random steps, resuming after each; finish it and compare the final
    checkpoint (model, optimizer, RNG states, loader, counters, EMA) bitwise with an
    uninterrupted run. A SIGTERM must also exit 143 with one line and checkpoint at the
    next step boundary."""
    cfg = run_config(epochs=_epochs_for(len(signals)))
    total = cfg["train"]["epochs"] * STEPS_PER_EPOCH
    reference = reference_run(cfg)
    work = fresh_dir("interrupt")
    cfg_file, run = write_yaml(cfg, work / "c.yaml"), work / "run"
    failures: list[str] = []
    landed: list[tuple[str, int]] = []
    lags: list[int] = []
    targets = sorted(random.Random(seed).sample(range(1, total - 2), len(signals)))
    for i, (target, sig) in enumerate(zip(targets, signals)):
        proc = start_train(cfg_file, run, resume=i > 0)
        wait_for(lambda: last_step(run) >= target, proc)
        if proc.poll() is not None:
            failures.append(f"interruption {i + 1}: the run ended first (exit {proc.returncode})")
            continue
        seen = last_step(run)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        landed.append((signal.Signals(sig).name, seen))
        if sig == signal.SIGTERM:
            lags.append(last_step(run) - seen)
            problem = _check_term(err, proc.returncode, seen, last_step(run))
        else:
            problem = None if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}: {err[-300:]}"
        if problem:
            failures.append(f"interruption {i + 1} ({signal.Signals(sig).name}): {problem}")
    equal = _finish_and_compare(cfg_file, run, reference, failures)
    return result(failures, interruptions=len(landed), total_steps=total,
                  signalled_at_steps=[s for _, s in landed], signals=[n for n, _ in landed],
                  max_steps_after_sigterm=max(lags, default=None), bitwise_equal=equal)


# ------------------------------------------------------------------------------ 1. SIGKILL
def kill_resume(kills: int = 3, *, seed: int = 11) -> dict[str, Any]:
    """SIGKILL at ``kills`` seeded random steps, then a bitwise comparison (see :func:`interruptions`)."""
    return interruptions([signal.SIGKILL] * kills, seed=seed)


# ------------------------------------------------------------------------------ 3. SIGTERM
def sigterm(stops: int = 1, *, seed: int = 13) -> dict[str, Any]:
    """SIGTERM ``stops`` times mid-run, then a bitwise comparison (see :func:`interruptions`)."""
    return interruptions([signal.SIGTERM] * stops, seed=seed)


# -------------------------------------------------------------------- 2. kill during save
def _save_forever(root: str, step: int, numel: int, conn: Any) -> None:
    """Nothing but checkpoint saves, reporting each completed step: a kill lands in one
    almost surely. Runs in a process forked from a server that has torch imported."""
    import torch

    from dlopt.train import checkpoint as io

    torch.set_num_threads(1)
    while True:
        files = {io.WEIGHTS: io.weights_bytes({"w": torch.full((numel,), float(step))}),
                 io.STATE: io.state_bytes({"step": step, "m": torch.full((2 * numel,), float(step))})}
        path = io.write_checkpoint(root, files, step=step, epoch=0)
        io.point(root, "last", path)
        io.cleanup(root)
        conn.send(step)
        step += 1


def _check_saved(root: Path, done: int) -> str | None:
    """None when ``root/last`` loads, is consistent, and is not older than ``done``."""
    from dlopt.train import CheckpointError, read_checkpoint

    try:
        ck = read_checkpoint(root)
    except CheckpointError as exc:
        return f"last checkpoint does not load: {exc}"
    step = ck.manifest["step"]
    if step < done:
        return f"last checkpoint is step {step}, but step {done} had completed"
    if not (bool((ck.weights["w"] == step).all()) and ck.state["step"] == step
            and bool((ck.state["m"] == step).all())):
        return f"checkpoint step {step} holds another step's data"
    return None


def kill_during_save(kills: int = 5, *, seed: int = 17, megabytes: float = 2.0) -> dict[str, Any]:
    """SIGKILL a process that does nothing but write checkpoints (``megabytes`` of weights,
    twice that of state) at seeded random times, ``kills`` times; after each kill the last
    checkpoint must load, hold one step's data, and be at least the last reported step. The
    next process continues in the same folder (cleaning up the debris). The processes fork
    from a server with torch imported, so a kill costs no interpreter start."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "dlopt.train.checkpoint"])
    rng = random.Random(seed)
    root = fresh_dir("save") / "checkpoints"
    numel = int(megabytes * 2**20 / 4)
    failures: list[str] = []
    debris = 0
    step = 1
    for i in range(kills):
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_save_forever, args=(str(root), step, numel, send), daemon=True)
        proc.start()
        send.close()
        if not recv.poll(120) or not proc.is_alive():  # one save done: the process is warm
            failures.append(f"kill {i + 1}: the saver died or never saved (exit {proc.exitcode})")
            proc.kill()
            break
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        done = 0
        while recv.poll():
            try:
                done = recv.recv()
            except EOFError:
                break
        live = {"last", os.readlink(root / "last")} if (root / "last").is_symlink() else {"last"}
        debris += bool({p.name for p in root.iterdir()} - live)  # the kill interrupted a save
        problem = _check_saved(root, done)
        if problem:
            failures.append(f"kill {i + 1}: {problem}")
            break
        step = json.loads((root / "last" / "manifest.json").read_text())["step"] + 1
    return result(failures, kills=kills, saves=step - 1, kills_leaving_partial_save=debris,
                  checkpoint_mb=round(3 * megabytes, 1))


def full_disk() -> dict[str, Any]:
    """Resume a finished run for one more epoch under a file-size limit smaller than its
    checkpoint files (RLIMIT_FSIZE, as a full disk): ``dlopt train`` must exit 1 with one
    line, and the previous checkpoint must still load unchanged."""
    from typer.testing import CliRunner

    from dlopt.cli import app
    from dlopt.train import read_checkpoint

    cfg = run_config(epochs=_epochs_for(3))
    run = fresh_dir("disk") / "run"
    shutil.copytree(reference_run(cfg), run, symlinks=True)
    before = read_checkpoint(run)
    limit = min(e["bytes"] for e in before.manifest["files"].values()) // 2
    cfg["train"]["epochs"] += 1
    cfg_file = write_yaml(cfg, run.parent / "c.yaml")
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        res = CliRunner().invoke(app, ["train", str(cfg_file), "--run-dir", str(run), "--resume"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    failures: list[str] = []
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    if res.exit_code != 1 or len(lines) != 1 or "Traceback" in res.output:
        failures.append(f"exit {res.exit_code}, output {res.output[-300:]!r}, exception {res.exception!r}")
    after = read_checkpoint(run)
    if after.manifest != before.manifest:
        failures.append(f"the last checkpoint changed: step {after.manifest['step']}")
    return result(failures, file_size_limit_bytes=limit, exit_code=res.exit_code,
                  message=lines[-1] if lines else "", previous_checkpoint_loads=after.manifest == before.manifest)


# -------------------------------------------------------------------------- 5. non-finite
class _Inject:
    """Fault injection: NaN into the loss or Inf into one gradient at training step ``step``,
    or (``amplify``) every loss times 1,000 so that gradients are large."""

    order = -20  # before unscaling, clipping and the guard

    def __init__(self, kind: str, step: int) -> None:
        self.kind, self.step = kind, step

    def on_after_loss(self, state: Any) -> None:
        if self.kind == "nan_loss" and state.step + 1 == self.step:
            state.loss = state.loss * float("nan")
        elif self.kind == "amplify":
            state.loss = state.loss * 1000.0

    def on_after_backward(self, state: Any) -> None:
        if self.kind == "inf_grad" and state.step + 1 == self.step:
            p = next(p for p in state.module.parameters() if p.grad is not None)
            p.grad.view(-1)[0] = float("inf")


class _Watch:
    """Records, per optimizer step, whether loss and gradients were finite and the gradient
    norm after clipping (runs between clipping, order -5, and the guard, order 10)."""

    order = 0

    def __init__(self) -> None:
        self.first_bad: int | None = None
        self.max_norm = 0.0
        self.max_pre_clip = 0.0

    def on_before_optimizer_step(self, state: Any) -> None:
        import torch

        grads = [p.grad for p in state.module.parameters() if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
        finite = bool(torch.isfinite(state.loss)) and all(bool(torch.isfinite(g).all()) for g in grads)
        if not finite and self.first_bad is None:
            self.first_bad = state.step + 1
        if finite:
            self.max_norm = max(self.max_norm, norm)
        if state.grad_norm is not None and bool(torch.isfinite(state.grad_norm)):
            self.max_pre_clip = max(self.max_pre_clip, float(state.grad_norm))


def _nonfinite_run(kind: str, step: int, policy: str, **train: Any) -> dict[str, Any]:
    """One run with an injected fault; what it raised, where, and what was saved."""
    import torch

    from dlopt.config import parse_config
    from dlopt.errors import NonFiniteError
    from dlopt.train import read_checkpoint, train_run

    regularization = train.pop("regularization", {})
    cfg = run_config(epochs=1, every_steps=1, nonfinite=policy, **train)
    cfg["train"]["regularization"] = {**cfg["train"]["regularization"], **regularization}
    run = fresh_dir(kind) / "run"
    watch = _Watch()
    callbacks = [watch] + ([_Inject(kind, step)] if kind in ("nan_loss", "inf_grad", "amplify") else [])
    out: dict[str, Any] = {"error": None, "skipped": None}
    try:
        res = train_run(parse_config(cfg), run_dir=run, callbacks=callbacks)
        out["skipped"] = res.summary.get("nonfinite_skipped")
    except NonFiniteError as exc:
        out["error"] = str(exc)
    try:
        ck = read_checkpoint(run)
        out["saved_step"] = ck.manifest["step"]
        out["saved_finite"] = all(bool(torch.isfinite(t).all()) for t in ck.weights.values())
    except Exception:  # noqa: BLE001 - no checkpoint at all is acceptable when step 1 failed
        out["saved_step"], out["saved_finite"] = None, True
    out["first_bad"], out["max_norm"], out["max_pre_clip"] = watch.first_bad, watch.max_norm, watch.max_pre_clip
    return out


def non_finite(*, seed: int = 19) -> dict[str, Any]:
    """NaN loss and Inf gradient at a seeded random step k (policies stop and skip), lr=1e6,
    and clipping at 1.0: stop names step k and saves nothing past k-1; skip skips exactly one
    step; no checkpoint holds NaN/Inf; the clipped gradient norm stays <= 1 + 1e-6."""
    k = random.Random(seed).randint(2, STEPS_PER_EPOCH - 1)
    failures: list[str] = []
    figures: dict[str, Any] = {"fault_step": k}
    for kind in ("nan_loss", "inf_grad"):
        stop = _nonfinite_run(kind, k, "stop")
        if not stop["error"] or f"at step {k} " not in stop["error"]:
            failures.append(f"{kind}/stop: error {stop['error']!r} does not name step {k}")
        if stop["saved_step"] != k - 1 or not stop["saved_finite"]:
            failures.append(f"{kind}/stop: last checkpoint step {stop['saved_step']}, finite {stop['saved_finite']}")
        skip = _nonfinite_run(kind, k, "skip")
        if skip["error"] or skip["skipped"] != 1 or not skip["saved_finite"]:
            failures.append(f"{kind}/skip: error {skip['error']!r}, skipped {skip['skipped']}")
        figures[kind] = {"stop_error": stop["error"], "skip_skipped": skip["skipped"]}
    huge = _nonfinite_run("lr", 0, "stop", optim={"name": "sgd", "lr": 1e6}, schedule={"name": "constant"})
    named = huge["error"] and huge["first_bad"] is not None and f"at step {huge['first_bad']} " in huge["error"]
    if not named or not huge["saved_finite"]:
        failures.append(f"lr=1e6: error {huge['error']!r}, first non-finite step {huge['first_bad']}, "
                        f"saved finite {huge['saved_finite']}")
    figures["lr_1e6"] = {"first_nonfinite_step": huge["first_bad"], "stopped_at_that_step": bool(named),
                         "error": huge["error"]}
    clip = _nonfinite_run("amplify", 0, "stop", optim={"name": "sgd", "lr": 0.01}, schedule={"name": "constant"},
                          regularization={"clip_norm": 1.0})
    if clip["error"] or clip["max_norm"] > 1 + 1e-6 or clip["max_pre_clip"] <= 1.0:
        failures.append(f"clip 1.0: error {clip['error']!r}, max norm {clip['max_norm']}, "
                        f"max before clipping {clip['max_pre_clip']}")
    figures["clip_1"] = {"max_grad_norm": clip["max_norm"], "max_before_clip": clip["max_pre_clip"]}
    return result(failures, **figures)


# ------------------------------------------------------------------------- 10. determinism
def determinism() -> dict[str, Any]:
    """Two seeded runs in deterministic mode give ``torch.equal`` weights; another seed differs."""
    import torch

    from dlopt.config import parse_config
    from dlopt.train import train_run

    from train_helpers import weights

    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = run_config(epochs=1, every_steps=None, seed=seed)
        runs[name] = weights(train_run(parse_config(cfg), run_dir=fresh_dir("det") / "run").run_dir)
    same = all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    differ = any(not torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])
    failures = ([] if same else ["two runs with seed 0 differ"]) + ([] if differ else ["seeds 0 and 1 give equal weights"])
    return result(failures, same_seed_equal=same, other_seed_differs=differ, tensors=len(runs["a"]))
