"""Several processes: DDP training under ``torchrun`` (``dlopt train --nproc N`` launches it).

Nothing here is home-made cluster code: torchrun starts, watches and restarts the processes
and sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; ``torch.distributed`` (gloo on CPU, nccl on
CUDA) moves the data; ``DistributedDataParallel`` averages the gradients. dlopt adds what its
engine needs around them, each a handler on the loop's events:

* the in-memory loader takes its rank's slice of the one seeded permutation every rank draws
  (``make_loader(rank=, world_size=)``), so the union of the ranks' batch *b* is the global
  batch *b* of a one-process run: with ``train.distributed.batch: global`` a step does the
  same math for any process count, and a checkpoint resumes with any count dividing the batch;
* the epoch's train loss is summed over the ranks and the validation metrics are averaged,
  so every rank sees the same numbers and early stopping, the plateau schedule and the best
  checkpoint decide alike; a stop requested on any rank stops all of them;
* the NaN/Inf guard sees the loss averaged over the ranks (the gradients are already
  averaged), so a bad step stops or is skipped on every rank at once;
* only rank 0 writes (checkpoints, metrics.jsonl, summary.json, model.safetensors) and
  reports; every rank reads ``checkpoints/last`` on resume (a shared directory across hosts);
* every rank draws its own random numbers (dropout, augmentation, mixup/cutmix) from a seed
  derived from (seed, rank), and each rank's random state travels in the checkpoints;
* after torchrun restarts the group (``--max-restarts``), the run resumes from its last
  checkpoint by itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import os
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.distributed as dist

from dlopt.errors import ConfigError, RunError

__all__ = ["World", "env_world", "session", "prepare_run_dir", "check_supported", "check_devices",
           "dist_handlers", "is_main_process", "launch", "DDPWrap", "GlobalBatch", "ReduceMetrics", "AgreeStop",
           "AgreeNonFinite", "RankRandomness", "rank_seed", "record_failure", "LAUNCHER_ENV"]

log = logging.getLogger(__name__)

#: set by :func:`launch` for its processes: the launcher prints the group's one error line
LAUNCHER_ENV = "DLOPT_LAUNCHER"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# what a rank reports when a peer went away: a consequence, never the group's cause
_LOST = "lost the other processes"


# ---------------------------------------------------------------------------------- world
@dataclass(frozen=True)
class World:
    """This process's place in the group (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    restart: int = 0  # torchrun's TORCHELASTIC_RESTART_COUNT: >0 after a group restart

    @property
    def enabled(self) -> bool:
        """True with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes and reports."""
        return self.rank == 0

    def local_batch(self, batch_size: int, mode: str) -> int:
        """This rank's batch for ``train.batch_size`` read as ``mode`` (global | per_rank)."""
        if mode == "per_rank" or self.world_size == 1:
            return batch_size
        if batch_size % self.world_size:
            raise ConfigError(f"train.batch_size={batch_size} with train.distributed.batch=global must be "
                              f"divisible by the {self.world_size} processes")
        return batch_size // self.world_size

    def global_batch(self, batch_size: int, mode: str) -> int:
        """The batch one optimizer step averages over, summed over the ranks."""
        return self.local_batch(batch_size, mode) * self.world_size

    def lr_factor(self, batch_size: int, mode: str, scaling: str) -> float:
        """``optim.lr`` multiplier: k or sqrt(k) with k = global batch / ``train.batch_size``."""
        k = self.global_batch(batch_size, mode) / batch_size
        return {"none": 1.0, "linear": k, "sqrt": math.sqrt(k)}[scaling]


def _env_int(env: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(env.get(key, default))
    except ValueError:
        raise ConfigError(f"environment {key}={env[key]!r}: must be an integer (torchrun sets it)") from None


def env_world(env: Mapping[str, str] | None = None) -> World:
    """The world torchrun describes in the environment (one process when it is unset)."""
    env = os.environ if env is None else env
    world = World(rank=_env_int(env, "RANK", 0), world_size=_env_int(env, "WORLD_SIZE", 1),
                  local_rank=_env_int(env, "LOCAL_RANK", 0),
                  restart=_env_int(env, "TORCHELASTIC_RESTART_COUNT", 0))
    if world.world_size < 1 or not 0 <= world.rank < world.world_size:
        raise ConfigError(f"environment RANK={world.rank}, WORLD_SIZE={world.world_size}: "
                          "need 0 <= RANK < WORLD_SIZE")
    return world


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun group (those print nothing)."""
    return env_world().is_main


# -------------------------------------------------------------------------------- session
def _backend(device: torch.device, backend: str) -> str:
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError(f"train.distributed.backend=nccl needs CUDA, the device is {device.type}; use gloo or auto")
    return backend


@contextlib.contextmanager
def session(device: torch.device, *, backend: str = "auto", timeout_s: float = 300.0) -> Iterator[World]:
    """The process group for one run: joined here (env:// from torchrun) unless the caller
    already did, left at the end. A lost peer becomes a one-line :class:`RunError` (exit 1,
    which makes torchrun restart the group when restarts remain)."""
    world = env_world()
    if not world.enabled:
        yield world
        return
    _stop_with_launcher()
    owned = not dist.is_initialized()
    try:
        if owned:
            _join(world, device, backend, timedelta(seconds=timeout_s))
        yield world
        if owned:
            # leave together: rank 0 still writes results after training, and a rank that tears
            # gloo down while its peer is mid-exit was seen to abort ("terminate called ...")
            dist.barrier()
    except (dist.DistError, RuntimeError) as exc:
        if not _is_comm_error(exc):
            raise
        raise RunError(f"rank {world.rank}: {_LOST} ({_first_line(exc)}); "
                       "with --max-restarts torchrun restarts the group from the last checkpoint") from None
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


def _stop_with_launcher() -> None:
    """Ask Linux for a SIGTERM when the process that started this one (torchrun's agent: the
    ``dlopt train --nproc`` launcher) dies. A launcher killed with SIGKILL cannot stop its
    processes, which went on training and writing the run directory unseen beside a resumed
    run; with SIGTERM they save a checkpoint and stop, as on any SIGTERM."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no such request
        return
    launcher = os.environ.get(LAUNCHER_ENV, "")
    if launcher.isdigit() and os.getppid() != int(launcher):  # it died before the request
        os.kill(os.getpid(), signal.SIGTERM)


def check_devices(device: torch.device, backend: str, *, local_processes: int) -> None:
    """Refuse, before any process starts, a backend the device cannot use or more CUDA
    processes on this machine than it has GPUs (each process drives GPU ``LOCAL_RANK``)."""
    _backend(device, backend)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and local_processes > gpus:
        raise ConfigError(f"{local_processes} CUDA processes on this machine, which has {gpus} GPU(s): "
                          f"each process needs its own GPU; use at most {gpus} processes or train.device=cpu")


def _join(world: World, device: torch.device, backend: str, timeout: timedelta) -> None:
    if device.type == "cuda":
        check_devices(device, backend, local_processes=world.local_rank + 1)
        torch.cuda.set_device(world.local_rank)
    name = _backend(device, backend)
    store, rank, size = next(dist.rendezvous("env://", timeout=timeout))
    # torchrun keeps one store across group restarts: without a per-restart prefix the new
    # ranks would read the dead ranks' addresses and fail to connect
    store = dist.PrefixStore(f"dlopt/restart-{world.restart}/", store)
    dist.init_process_group(name, store=store, rank=rank, world_size=size, timeout=timeout)
    log.info("rank %d/%d joined the %s process group", world.rank, world.world_size, name)


def _is_comm_error(exc: BaseException) -> bool:
    """A collective failed (a peer died or hung): torch raises DistError or, from gloo and
    nccl, a plain RuntimeError naming them."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return any(k in text for k in ("gloo", "nccl", "connection reset", "connection closed"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # gloo's lines start with its source location ("[.../pair.cc:537] ") and end with a long
    # hint about hanging workers: the first sentence between them is what happened
    text = re.sub(r"^\[[^\]\s]+:\d+\]\s*", "", text)
    return text.splitlines()[0].split(". ")[0][:160] if text else type(exc).__name__


def _agree(flag: bool, device: torch.device, *, op: Any = None) -> bool:
    """``flag`` reduced over the ranks: all true (default) or any true (``op=MAX``)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=op or dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


# ------------------------------------------------------------------------------ run dir
def _restart_flags(d: Path, resume: bool, overwrite: bool, config_text: str) -> tuple[bool, bool]:
    """After torchrun restarted the group: resume from ``checkpoints/last`` when there is one;
    else start over, but only if the directory holds this very run (same config.yaml)."""
    from dlopt.train import rundir

    if (d / rundir.CHECKPOINTS / "last").exists():
        return True, False
    saved = d / rundir.CONFIG
    if saved.is_file() and saved.read_text() == config_text:
        return False, True
    return resume, overwrite


def prepare_run_dir(world: World, run_dir: str | Path, *, resume: bool, overwrite: bool,
                    config_text: str, device: torch.device) -> tuple[Path, bool]:
    """``rundir.prepare_run_dir`` on rank 0 only; returns the directory and whether this is a
    resume (decided on rank 0 and agreed, so all ranks restore the same checkpoint)."""
    from dlopt.train import rundir

    d = Path(run_dir)
    error: BaseException | None = None
    if world.is_main:
        if world.restart > 0:
            resume, overwrite = _restart_flags(d, resume, overwrite, config_text)
            log.warning("restart %d of the process group: %s", world.restart,
                        "resuming from the last checkpoint" if resume else "starting over")
        try:
            rundir.prepare_run_dir(d, resume=resume, overwrite=overwrite)
        except ConfigError as exc:
            error = exc
    if not world.enabled:
        if error is not None:
            raise error
        return d, resume
    t = torch.tensor([0.0 if error is None else 1.0, 1.0 if resume else 0.0], device=device)
    dist.broadcast(t, src=0)
    if error is not None:
        raise error
    if t[0].item() > 0.5:
        raise RunError(f"rank {world.rank}: rank 0 could not prepare {d} (see its error)")
    return d, bool(t[1].item() > 0.5)


def check_supported(world: World, *, cv: int | None, unfreeze_at_epoch: int | None) -> None:
    """Refuse what DDP here cannot do, with the rule."""
    if not world.enabled:
        return
    if cv:
        raise ConfigError("train.cv (cross-validation) runs in one process; drop --nproc/torchrun or train.cv")
    if unfreeze_at_epoch is not None:
        # DDP registers the trainable parameters once; unfreezing later would leave them unsynchronised
        raise ConfigError("train.transfer.unfreeze_at_epoch is not supported with several processes; "
                          "train the frozen and unfrozen phases as two runs (transfer.init_from)")


# ------------------------------------------------------------------------------- handlers
class DDPWrap:
    """Wraps the training forward in ``DistributedDataParallel`` at fit start (after
    channels_last converted the weights, before ``Compile`` compiles ``state.model``)."""

    order = 15

    def __init__(self, world: World) -> None:
        self.world = world

    def on_fit_start(self, state: Any) -> None:
        from torch.nn.parallel import DistributedDataParallel

        ids = [state.device.index if state.device.index is not None else torch.cuda.current_device()] \
            if state.device.type == "cuda" else None
        # DDP broadcasts rank 0's weights now; a resume then loads the same checkpoint on every rank
        state.model = DistributedDataParallel(state.module, device_ids=ids)
        state.extra["ddp"] = state.model  # GradAccumulation's no_sync(), even once Compile wrapped it


class GlobalBatch:
    """Records the global batch in every checkpoint, one process included, so a resume with
    another one (``batch: per_rank`` and another process count) is refused, not trained on."""

    state_key = "distributed"

    def __init__(self, world: World, *, global_batch: int, batch_size: int) -> None:
        self.world, self.global_batch, self.batch_size = world, global_batch, batch_size

    def state_dict(self) -> dict[str, int]:
        return {"global_batch": self.global_batch, "world_size": self.world.world_size}

    def fallback_state(self) -> dict[str, int]:
        """A checkpoint without this record: one process wrote it (several always record)."""
        return {"global_batch": self.batch_size, "world_size": 1}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        if int(saved["global_batch"]) != self.global_batch:
            raise ConfigError(
                f"cannot resume: the checkpoint was trained with a global batch of {saved['global_batch']} "
                f"({saved['world_size']} process(es)), this run has {self.global_batch} "
                f"({self.world.world_size}); use train.distributed.batch=global or the same process count")


class AgreeNonFinite:
    """Before the NaN/Inf guard (order 10) looks at ``state.loss``, replace it by its mean over
    the ranks: a non-finite loss anywhere is then seen everywhere, and the guard (which also
    checks the already averaged gradients) stops or skips the same step on every rank.

    The same all-reduce carries each rank's "got SIGTERM" flag to ``termination``
    (:class:`~dlopt.train.callbacks.GracefulTermination`), so every rank stops after the same
    step and rank 0 saves it, for one extra number instead of one more collective per step.
    On CUDA the verdict is read at the next step, when the device has computed it (no sync)."""

    order = 9

    def __init__(self, world: World, termination: Any = None) -> None:
        self.world, self.termination = world, termination
        self._verdict: torch.Tensor | None = None
        if termination is not None:
            termination.shared = True

    def on_before_optimizer_step(self, state: Any) -> None:
        term = self.termination
        if self._verdict is not None:
            term.agree(bool(self._verdict.item() > 0))
        received = term is not None and term.received is not None
        loss = state.loss.detach().float().reshape(())
        buf = torch.stack([loss, loss.new_full((), float(received))])  # a fill, not a host copy: no sync
        dist.all_reduce(buf)
        state.loss = buf[0] / self.world.world_size
        if term is not None:
            self._verdict = buf[1]
            if buf.device.type == "cpu":  # reading a CPU number is no sync: stop after this very step
                term.agree(bool(self._verdict.item() > 0))
                self._verdict = None


def rank_seed(seed: int, rank: int, *, step: int = 0) -> int:
    """The seed of ``rank``'s own random stream: ``seed`` itself for rank 0 at step 0 (the
    stream of a one-process run), else a 63-bit seed mixed from (seed, rank, step)."""
    if rank == 0 and step == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed % 2**64, rank, step]).generate_state(1, np.uint64)[0] >> 1)


class RankRandomness:
    """Every rank draws its own random numbers for what is drawn per sample: dropout and
    random augmentation (torch's global generator, numpy's, python's) and mixup/cutmix
    (handlers with ``rank_stream = True`` and a ``reseed(seed)``). Rank 0 keeps the stream a
    one-process run has; rank r > 0 reseeds from ``rank_seed(seed, r)`` at fit start, after
    the model was initialised (identically: DDP also broadcasts rank 0's weights). The data
    order is not touched (the loader has its own seeded generator).

    ``Checkpointing`` calls :meth:`gather` at every save (all ranks save at the same step) and
    writes every rank's state; on resume with the same process count each rank restores its
    own (:meth:`restore`), with another count (or a checkpoint without them) ranks > 0 reseed
    from (seed, rank, step), so they still differ, but the run is no longer exact."""

    order = 14  # fit start: after the model was built, before Checkpointing (1000) restores

    def __init__(self, world: World, *, seed: int) -> None:
        self.world, self.seed = world, seed
        self._own: list[Any] = []

    def on_fit_start(self, state: Any) -> None:
        self._own = [h for h in state.handlers if getattr(h, "rank_stream", False)]
        state.extra["rank_random"] = self
        if self.world.rank:
            self._reseed(step=0)

    def _reseed(self, *, step: int) -> None:
        from dlopt.train.device import seed_everything

        seed = rank_seed(self.seed, self.world.rank, step=step)
        seed_everything(seed)
        for h in self._own:
            h.reseed(seed)

    def _local_state(self) -> dict[str, Any]:
        from dlopt.train import checkpoint as io
        from dlopt.train.callbacks.checkpoint import handler_key

        return {"rng": io.rng_state(), "handlers": {handler_key(h): h.state_dict() for h in self._own}}

    def gather(self) -> list[dict[str, Any]] | None:
        """Every rank's random state, on rank 0 (None elsewhere); a collective."""
        states: list[Any] | None = [None] * self.world.world_size if self.world.is_main else None
        dist.gather_object(self._local_state(), states, dst=0)
        return states

    def restore(self, saved: Sequence[Mapping[str, Any]] | None, *, step: int) -> None:
        """After ``Checkpointing`` restored rank 0's state on every rank: this rank's own."""
        from dlopt.train import checkpoint as io
        from dlopt.train.callbacks.checkpoint import handler_key

        if saved is not None and len(saved) == self.world.world_size:
            mine = saved[self.world.rank]
            io.set_rng_state(mine["rng"])
            for h in self._own:
                h.load_state_dict(mine["handlers"][handler_key(h)])
            return
        if self.world.is_main:
            log.warning("the checkpoint holds the random state of %s process(es), this run has %d: ranks > 0 "
                        "draw fresh random numbers (exact resume needs the same process count)",
                        len(saved) if saved is not None else 1, self.world.world_size)
        if self.world.rank:
            self._reseed(step=step)


class ReduceMetrics:
    """At epoch end, before anything reads them: train loss = sum of the ranks' loss sums /
    their batch count; validation metrics = mean over the ranks (equal up to rounding, as
    every rank evaluates the whole validation split with the same weights)."""

    order = -100

    def __init__(self, world: World) -> None:
        self.world = world

    def on_epoch_end(self, state: Any) -> None:
        keys = sorted(state.metrics)
        loss_sum = float(state.loss_sum) if state.loss_sum is not None else 0.0
        buf = torch.tensor([loss_sum, float(state.loss_batches)] + [float(state.metrics[k]) for k in keys],
                           dtype=torch.float64, device=state.device)
        dist.all_reduce(buf)
        values = buf.tolist()
        state.train_loss = values[0] / values[1] if values[1] else float("nan")
        state.metrics = {k: v / self.world.world_size for k, v in zip(keys, values[2:])}
        row = state.history[-1]
        row["train_loss"] = state.train_loss
        row.update(state.metrics)


class AgreeStop:
    """After early stopping (order 100) and before the epoch is logged and checkpointed: a
    stop requested on any rank stops every rank (a lone stop would hang the others)."""

    order = 150

    def __init__(self, world: World) -> None:
        self.world = world

    def on_epoch_end(self, state: Any) -> None:
        if _agree(state.stop, state.device, op=dist.ReduceOp.MAX) and not state.stop:
            state.request_stop("another process stopped")


def dist_handlers(world: World, *, batch_size: int, mode: str, seed: int, termination: Any = None) -> list[Any]:
    """The handlers a run needs for ``train.batch_size`` read as ``mode`` (one process: the
    global batch record only); ``seed``: ``train.seed``, from which each rank derives its
    random stream; ``termination``: the run's ``GracefulTermination``, which then stops on a
    signal only when the ranks agree."""
    record = GlobalBatch(world, global_batch=world.global_batch(batch_size, mode), batch_size=batch_size)
    if not world.enabled:
        return [record]
    return [record, DDPWrap(world), RankRandomness(world, seed=seed), AgreeNonFinite(world, termination),
            ReduceMetrics(world), AgreeStop(world)]


# --------------------------------------------------------------------------------- launch
def record_failure(message: str, exit_code: int) -> bool:
    """A torchrun process's error line, written where torchrun collects it (its
    ``TORCHELASTIC_ERROR_FILE``: read back by :func:`launch`, shown in a plain torchrun's
    failure report). Returns whether this process should print the line itself: rank 0 under a
    plain torchrun, or any process the line could not be handed on from (``dlopt train --nproc``
    prints one line for the group; the other ranks' lines repeat rank 0's or follow from its failure)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    handed_on = bool(path) and _write_record(Path(str(path)), message, exit_code)
    if not handed_on or (os.environ.get("RANK", "0") == "0" and LAUNCHER_ENV not in os.environ):
        return True
    log.debug("error (reported by the launcher or rank 0): %s", message)
    return False


def _write_record(path: Path, message: str, exit_code: int) -> bool:
    # torchrun's "new message format" (a plain string) plus the code the launcher needs
    record = {"message": message, "timestamp": int(time.time()), "dlopt": {"exit_code": exit_code}}
    try:
        path.write_text(json.dumps(record))
    except OSError:
        return False
    return True


def launch(worker_args: Sequence[str], *, nproc: int, max_restarts: int = 0) -> None:
    """Run ``python -m dlopt <worker_args>`` in ``nproc`` processes on this machine through
    torchrun (``torch.distributed.run``, standalone rendezvous), which restarts the whole group
    up to ``max_restarts`` times after a process dies. Raises :class:`RunError` (or the
    error a process reported) when it fails for good: torchrun stops the survivors within its
    shutdown timeout, so it never hangs, and the group's failure reads as one line."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if nproc < 1 or max_restarts < 0:
        raise ConfigError(f"--nproc={nproc}, --max-restarts={max_restarts}: need nproc >= 1, max-restarts >= 0")
    with tempfile.TemporaryDirectory(prefix="dlopt-torchrun-") as logs, _launcher_env(), _quiet_torchrun():
        argv = ["--standalone", f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}",
                f"--log-dir={logs}", "-m", "dlopt", *worker_args]
        log.info("torchrun %s", " ".join(argv))
        try:
            run(get_args_parser().parse_args(argv))
        except ChildFailedError as exc:
            raise _group_error(sorted(exc.failures.items()), nproc, max_restarts) from None
        except SignalException as exc:  # torchrun stopped its processes before re-raising
            raise _signal_error(exc.sigval, _rank0_record(Path(logs))) from None
        finally:
            sys.stdout.flush()


@contextlib.contextmanager
def _launcher_env() -> Iterator[None]:
    """Tell the processes (they inherit the environment) that the launcher reports for them."""
    os.environ[LAUNCHER_ENV] = str(os.getpid())  # the processes' parent: see _stop_with_launcher
    try:
        yield
    finally:
        os.environ.pop(LAUNCHER_ENV, None)


@contextlib.contextmanager
def _quiet_torchrun() -> Iterator[None]:
    """torchrun's own warnings and errors ("Sending process N closing signal", "failed
    (exitcode: -9) ...") repeat what the launcher's line says, and its OMP_NUM_THREADS banner
    what docs/scaling.md says; shown with --verbose only."""
    if log.isEnabledFor(logging.INFO):
        yield
        return
    loggers = [logging.getLogger(n) for n in ("torch.distributed.elastic", "torch.distributed.run")]
    null, propagate = logging.NullHandler(), [lg.propagate for lg in loggers]
    for lg in loggers:  # records stop here: no handler up the chain, not even logging's last resort
        lg.addHandler(null)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, was in zip(loggers, propagate):
            lg.propagate = was
            lg.removeHandler(null)


def _rank0_record(logs: Path) -> tuple[str, int] | None:
    """Rank 0's error line and exit code in torchrun's latest attempt, if it wrote one
    (``<logs>/<run>/attempt_<k>/<local rank>/error.json``)."""
    files = sorted(logs.glob("*/attempt_*/0/error.json"), key=lambda f: int(f.parent.parent.name.split("_")[1]))
    if not files:
        return None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads(files[-1].read_text())
        return str(data["message"]), int(data["dlopt"]["exit_code"])
    return None


def _signal_error(sig: signal.Signals, rank0: tuple[str, int] | None = None) -> BaseException:
    """The exit a one-process run would give: SIGTERM 143 with rank 0's line (where it saved
    the checkpoint), Ctrl-C 130 ("interrupted"), another signal 1."""
    from dlopt.train.callbacks.signals import RESUME_HINT, Terminated

    if sig == signal.SIGINT:
        return KeyboardInterrupt()
    if sig == signal.SIGTERM and rank0 is not None and rank0[1] == Terminated.exit_code:
        return Terminated(rank0[0])
    error = Terminated if sig == signal.SIGTERM else RunError
    return error(f"stopped by signal {sig.name}; {RESUME_HINT}")


def _reported(failure: Any) -> bool:
    """The process wrote its error line (:func:`record_failure`) before it exited."""
    return bool(getattr(failure, "error_file_data", {}).get("dlopt"))


def _group_error(failures: list[tuple[int, Any]], nproc: int, max_restarts: int) -> BaseException:
    """The launcher's one line for a group that failed for good (``failures``: torchrun's
    ``ProcessFailure`` per rank, by rank): the error a process reported by itself (rank 0's
    first), else the process that was killed (the others then lost it), else any report,
    else a count; with the exit code a process would give alone (2 config or data error,
    143 SIGTERM at a checkpoint, else 1). torchrun ends the survivors with SIGTERM (-15)."""
    reported = [(r, f) for r, f in failures if _reported(f)]
    own = [(r, f) for r, f in reported if _LOST not in f.message]
    killed = [(r, f) for r, f in failures if f.exitcode < 0 and f.exitcode != -signal.SIGTERM]
    if own or (reported and not killed):
        return _reported_error(*(own or reported)[0])
    if killed:
        return _killed_error(*killed[0], nproc, max_restarts)
    return _count_error(failures, nproc, max_restarts)


def _reported_error(rank: int, failure: Any) -> BaseException:
    from dlopt.train.callbacks.signals import Terminated

    kind = {ConfigError.exit_code: ConfigError, Terminated.exit_code: Terminated}.get(failure.exitcode, RunError)
    # a config or data error is the user's whatever rank saw it first; a failure is that rank's
    mine = rank == 0 or kind is ConfigError
    return kind(failure.message if mine else f"rank {rank}: {failure.message}")


def _killed_error(rank: int, failure: Any, nproc: int, max_restarts: int) -> RunError:
    from dlopt.train.callbacks.signals import RESUME_HINT

    sig = -failure.exitcode
    with contextlib.suppress(ValueError):
        sig = f"{sig}, {signal.Signals(sig).name}"
    return RunError(f"process rank {rank} of {nproc} was killed (signal {sig}) and the group stopped after "
                    f"{max_restarts} restart(s); {RESUME_HINT} from its last checkpoint, if one was saved")


def _count_error(failures: list[tuple[int, Any]], nproc: int, max_restarts: int) -> BaseException:
    """No process said why: how many failed, and the first that failed by itself."""
    from dlopt.train.callbacks.signals import RESUME_HINT, Terminated

    own = [(r, f) for r, f in failures if f.exitcode != -signal.SIGTERM] or failures
    codes = {f.exitcode for _, f in own}
    if codes == {Terminated.exit_code}:
        return Terminated(f"{len(own)} of {nproc} processes stopped by SIGTERM at a checkpoint; {RESUME_HINT}")
    kind = ConfigError if codes == {ConfigError.exit_code} else RunError
    rank, code = own[0][0], own[0][1].exitcode
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    return kind(f"{len(own)} of {nproc} processes failed after {max_restarts} restart(s); first: rank {rank} ({how})")
