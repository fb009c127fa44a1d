"""The study driver: create or resume a study, run trials until the study holds exactly N
COMPLETE + PRUNED trials, keep the outputs current.

A worker's loop (several workers — processes, machines — may share one storage)::

    while time is left:
        with storage.lock():                      # one worker at a time
            fail trials whose heartbeat is stale, queue one retry each
            if COMPLETE + PRUNED + RUNNING < N:   # a queued retry (WAITING) is taken first;
                trial = study.ask()               # a new trial only while the sum with
                                                  # WAITING is < N
        if no trial: stop, or wait while other workers' trials run (one may fail and need
                     its retry run)
        run the objective with a heartbeat thread; tell COMPLETE / PRUNED / FAIL
        FAIL -> queue one retry (same parameters); failed trials do not count
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import multiprocessing
import signal
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import optuna
from optuna.trial import TrialState

from dlopt.errors import ConfigError, DloptError, RunError, first_line
from dlopt.tune._metrics import Direction, check_training_metrics, resolve_direction
from dlopt.tune._objective import Objective, train_objective
from dlopt.tune._outputs import (keep_best_artifacts, measured_values, trial_dir, write_plots,
                                 write_tables)
from dlopt.tune._pruning import PruningPolicy, TrialContext, constraint_values
from dlopt.tune._registry import PRUNERS, SAMPLERS, build
from dlopt.tune._space import SearchSpace, pruner_name
from dlopt.tune._storage import (HeartbeatThread, StudyStorage, claim_folder, open_storage,
                                 retry_once)
from dlopt.tune._warnings import optuna_warnings_as_log

if TYPE_CHECKING:
    from dlopt.config import ConstraintSpec, TuneConfig

log = logging.getLogger(__name__)

__all__ = ["TrialRecord", "TuneResult", "tune"]

_MAX_FAILS_IN_A_ROW = 3  # a worker whose trials keep failing stops instead of looping
_POLL_SECONDS = 1.0  # how often an idle worker looks at other workers' running trials


@dataclass(frozen=True)
class TrialRecord:
    """One trial this worker ran."""

    number: int
    state: str
    values: dict[str, float]
    params: dict[str, Any]
    epochs: int
    seconds: float
    note: str = ""
    retry_of: int | None = None


@dataclass
class TuneResult:
    """What :func:`tune` did: the study's totals and this process's trials."""

    study_name: str
    study_dir: Path
    storage: str
    counts: dict[str, int]
    ran: list[TrialRecord] = field(default_factory=list)
    best: dict[str, Any] | None = None
    outputs: list[Path] = field(default_factory=list)


@dataclass
class _Plan:
    """Everything derived from the config once per worker."""

    space: SearchSpace
    metrics: list[str]
    directions: list[Direction]
    policy: PruningPolicy
    sampler_name: str
    pruner_name: str


def tune(
    cfg: "TuneConfig",
    *,
    study: str | None = None,
    study_dir: str | Path | None = None,
    storage: str | None = None,
    trials: int | None = None,
    timeout: float | None = None,
    workers: int = 1,
    objective: Objective = train_objective,
    on_trial: Callable[[TrialRecord], None] | None = None,
    plots: bool = True,
) -> TuneResult:
    """Run (or resume) the study described by ``cfg.search`` until it holds ``trials``
    COMPLETE + PRUNED trials or ``timeout`` seconds pass.

    ``workers`` > 1 starts that many worker processes in all on the same storage (journal
    or PostgreSQL). ``objective`` replaces the training run (see :mod:`dlopt.tune._objective`).
    """
    return _tune(cfg, study=study, study_dir=study_dir, storage=storage, trials=trials,
                 timeout=timeout, workers=workers, objective=objective, on_trial=on_trial,
                 plots=plots, notes=True)


def _tune(cfg: "TuneConfig", *, study: str | None, study_dir: str | Path | None,
          storage: str | None, trials: int | None, timeout: float | None, workers: int,
          objective: Objective, on_trial: Callable[[TrialRecord], None] | None, plots: bool,
          notes: bool) -> TuneResult:
    """:func:`tune`; ``notes=False`` (a worker process) leaves the start-of-study notes and
    optuna's warnings at the study's start to the process that spawned it."""
    name = _study_name(study, cfg)
    sdir = Path(study_dir) if study_dir is not None else Path("runs") / name
    target = trials if trials is not None else cfg.search.trials
    budget = timeout if timeout is not None else cfg.search.timeout
    if target < 1:
        raise ConfigError(f"--trials={target}: need at least 1")
    if budget is not None and not budget > 0:
        raise ConfigError(f"--timeout={budget}: need a number of seconds > 0")
    if objective is train_objective:
        # a custom objective may report any val_ metric; dlopt's training runs report known ones
        check_training_metrics(cfg)
    try:
        sdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--study-dir {sdir}: cannot create it: {exc.strerror or exc}") from None
    with optuna_warnings_as_log():
        spec = storage if storage is not None else cfg.search.storage
        with _start_notes(notes):
            store = _open(cfg, spec, sdir, name, workers)
        children: list[Any] = []
        try:
            with _start_notes(notes):
                claim_folder(sdir, store, name)
                plan = _plan(cfg)
                if notes:
                    _note_sampler_limits(cfg, plan)
                opt_study = _load_study(store, name, plan, cfg)
            if plan.sampler_name == "grid":
                target = min(target, opt_study.sampler.grid_size)
            kwargs = dict(study=name, study_dir=str(sdir), storage=spec, trials=target,
                          timeout=budget, plots=False, objective=objective, on_trial=on_trial)
            children = [_spawn_worker(cfg, kwargs) for _ in range(workers - 1)]
            worker = _Worker(cfg, plan, store, opt_study, sdir, objective, on_trial)
            ran = _run_all(worker, children, target, budget)
            outputs = write_tables(opt_study, sdir, cfg, plan.metrics, plan.directions)
            if plots:
                outputs += write_plots(opt_study, sdir, plan.metrics)
            counts = Counter(t.state.name for t in opt_study.get_trials(deepcopy=False))
            best = _read_best(sdir)
            return TuneResult(name, sdir, store.url, dict(counts), ran, best, outputs)
        finally:
            _stop(children, wait=False)
            store.close()
            gc.unfreeze()


def _run_all(worker: "_Worker", children: list[Any], target: int,
             budget: float | None) -> list[TrialRecord]:
    """Run this process's trials, then wait for the worker processes. Interrupted, it stops
    them first (each fails and queues its running trial) and rewrites the tables last: each
    process's own refresh may have read the storage before another's trial was failed."""
    try:
        ran = worker.run(target, budget)
    except BaseException as exc:
        if children and _interrupted(exc):
            _stop(children, wait=True)
            worker.refresh_tables()
        raise
    for p in children:
        p.join()
        if p.exitcode != 0:
            # its trials are in the storage (a running one was failed and retried); the
            # user still needs to know a worker died
            log.warning("worker process %d exited with code %s; see its log above",
                        p.pid, p.exitcode)
    return ran


def _stop(children: list[Any], *, wait: bool) -> None:
    """SIGTERM to the worker processes still running (each fails and queues its trial)."""
    for p in children:
        if p.is_alive():
            p.terminate()
    for p in children if wait else []:
        p.join()


@contextlib.contextmanager
def _start_notes(shown: bool) -> Iterator[None]:
    """Warnings (and optuna's log lines, such as "Using an existing study") while a study
    starts, silenced in worker processes: their parent said them."""
    if shown:
        yield
        return
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _note_sampler_limits(cfg: "TuneConfig", plan: _Plan) -> None:
    """CMA-ES models only the float and int axes every trial has, and ignores constraints;
    optuna says so on every trial in its terms: dlopt says it once, in the config's."""
    if plan.sampler_name != "cmaes":
        return
    apart = [a.path for a in plan.space.axes if a.spec.type == "categorical" or a.spec.when]
    if apart:
        log.warning("search.sampler cmaes models the float and int axes every trial has; "
                    "drawn at random instead: %s", ", ".join(apart))
    if cfg.search.constraints:
        log.warning("search.constraints: cmaes does not use them to choose trials; infeasible "
                    "trials still never become the best")


def _study_name(study: str | None, cfg: "TuneConfig") -> str:
    """The study's name, checked before anything is created: it names runs/<study> and every
    trial's run (``<study>-NNNN``), so it follows the run-name rule (no '/', no '..')."""
    from dlopt.config import check_run_name

    key = "--study" if study else "search.study" if cfg.search.study else "name"
    name = study or cfg.search.study or cfg.name
    try:
        check_run_name(name)
    except ValueError as exc:
        raise ConfigError(f"{key} {name!r}: {exc}") from None
    return name


def _open(cfg: "TuneConfig", spec: str | None, sdir: Path, name: str, workers: int) -> StudyStorage:
    grace = cfg.search.grace or 4 * cfg.search.heartbeat
    return open_storage(spec, study_dir=sdir, study_name=name, interval=cfg.search.heartbeat,
                        grace=grace, workers=workers)


def _plan(cfg: "TuneConfig") -> _Plan:
    s = cfg.search
    metrics = [o.metric for o in s.objectives]
    directions = [resolve_direction(o.metric, o.direction, key=f"search.objectives[{i}]")
                  for i, o in enumerate(s.objectives)]
    multi = len(metrics) > 1
    pruner = pruner_name(s.pruner.name, multi=multi)
    pareto = build(PRUNERS, pruner, **s.pruner.options) if pruner == "pareto" else None
    policy = PruningPolicy(list(zip(metrics, directions)), list(s.constraints), pareto)
    return _Plan(SearchSpace(s.space), metrics, directions, policy, s.sampler.name, pruner)


def _load_study(store: StudyStorage, name: str, plan: _Plan, cfg: "TuneConfig") -> optuna.Study:
    s = cfg.search
    with store.lock():
        study = optuna.create_study(storage=store.storage, study_name=name,
                                    directions=plan.directions, load_if_exists=True)
        known = study.user_attrs.get("dlopt_objectives")
        done = any(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   for t in study.get_trials(deepcopy=False))
        # before any result, a renamed metric (a typo fixed) may take over the study
        if known is not None and known != plan.metrics and done:
            raise ConfigError(
                f"study {name!r} optimizes {known}; this config asks {plan.metrics}; "
                f"use another --study"
            )
        if study.directions != [optuna.study.StudyDirection[d.upper()] for d in plan.directions]:
            raise ConfigError(f"study {name!r} exists with other directions; use another --study")
        if plan.sampler_name != "grid":  # the grid records its points and checks them itself
            _check_axes_fit(study, name, plan.space)
        grid = _grid_sampler(study, name, plan, cfg) if plan.sampler_name == "grid" else None
        # workers started so far: offsets the sampler seed so a resumed study or a second
        # worker does not replay the first one's random draws
        starts = int(study.user_attrs.get("dlopt_worker_starts", 0))
        study.set_user_attr("dlopt_worker_starts", starts + 1)
        study.set_user_attr("dlopt_objectives", plan.metrics)
    # except for the grid (built above with the config's seed): its shuffled order is what its
    # stored grid ids index, so every start of the study must shuffle it the same way. The
    # offset wraps at numpy's 2**32 seeds, so the largest valid seed still resumes
    seed = None if s.sampler.seed is None else (s.sampler.seed + starts) % 2**32
    study.sampler = grid or build(SAMPLERS, plan.sampler_name, seed=seed, **s.sampler.options)
    study.pruner = (optuna.pruners.NopPruner() if plan.policy.multi
                    else build(PRUNERS, plan.pruner_name, **s.pruner.options))
    return study


def _check_axes_fit(study: optuna.Study, name: str, space: SearchSpace) -> None:
    """An axis whose kind, log scale or choices changed since the study's trials drew it would
    fail every new trial in optuna's storage: one line now instead."""
    from optuna.distributions import check_distribution_compatibility

    recorded: dict[str, Any] = {}
    for t in study.get_trials(deepcopy=False):
        recorded.update(t.distributions)
    for axis in space.axes:
        if axis.path in recorded:
            try:
                check_distribution_compatibility(recorded[axis.path], axis.distribution())
            except ValueError:
                raise ConfigError(f"{axis.key}: study {name!r} drew it as {recorded[axis.path]}, this "
                                  f"config asks {axis.distribution()}; keep its type, log and choices, "
                                  f"or use another --study") from None


def _grid_sampler(study: optuna.Study, name: str, plan: _Plan, cfg: "TuneConfig") -> Any:
    """This start's grid sampler, refused unless its point list is the one the study's stored
    grid ids index (same axes and values, shuffle and filtering of conditional points)."""
    space, seed = plan.space.grid(), cfg.search.sampler.seed
    sampler = build(SAMPLERS, "grid", search_space=space, seed=seed,
                    keep=_grid_filter(plan, cfg), **cfg.search.sampler.options)
    ran = [t.system_attrs["search_space"] for t in study.get_trials(deepcopy=False)
           if "grid_id" in t.system_attrs]
    if ran:
        # an older dlopt recorded nothing: its ids index optuna's full product
        known = study.user_attrs.get("dlopt_grid") or build(
            SAMPLERS, "grid", search_space=space, seed=seed).digest
        if known != sampler.digest or any(r != space for r in ran):
            raise ConfigError(f"study {name!r} was started with another grid (its values, seed "
                              f"or conditions differ from this config's); use another --study")
    study.set_user_attr("dlopt_grid", sampler.digest)
    return sampler


def _grid_filter(plan: _Plan, cfg: "TuneConfig") -> Callable[[Mapping[str, Any]], bool]:
    return plan.space.grid_filter(cfg.model_dump(mode="json", exclude={"search"}))


def _constraint_key(spec: "ConstraintSpec") -> str:
    """A readable name for optuna's record, e.g. ``params <= 50000``."""
    bounds = [f"{spec.min:g} <= " if spec.min is not None else "", spec.metric,
              f" <= {spec.max:g}" if spec.max is not None else ""]
    return "".join(bounds)


class _Worker:
    """Runs trials of one study in this process (see the module docstring)."""

    def __init__(self, cfg: "TuneConfig", plan: _Plan, store: StudyStorage, study: optuna.Study,
                 study_dir: Path, objective: Objective,
                 on_trial: Callable[[TrialRecord], None] | None) -> None:
        self.cfg = cfg
        self.plan = plan
        self.store = store
        self.study = study
        self.study_dir = study_dir
        self.objective = objective
        self.on_trial = on_trial
        self.base = cfg.model_dump(mode="json", exclude={"search"})

    def run(self, target: int, timeout: float | None) -> list[TrialRecord]:
        try:
            return self._run(target, timeout)
        except BaseException as exc:
            if _interrupted(exc):
                # the stopped trial was failed and its retry queued: show it in the tables now
                self.refresh_tables()
            raise

    def refresh_tables(self) -> None:
        """Rewrite the tables on the way out, without hiding why the worker stops: the
        interrupt may have cut a storage write short (then the next run writes them)."""
        try:
            self._write_tables()
        except Exception as exc:  # noqa: BLE001 - the interrupt is what the user must see
            log.warning("could not refresh the study's tables on the way out: %s", _one_line(exc))

    def _write_tables(self) -> None:
        write_tables(self.study, self.study_dir, self.cfg, self.plan.metrics, self.plan.directions)

    def _run(self, target: int, timeout: float | None) -> list[TrialRecord]:
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        ran: list[TrialRecord] = []
        fails = 0
        with _sigterm_flag() as stop:
            while time.monotonic() < deadline:
                if stop.is_set():
                    raise _terminated_between_trials()
                trial, running = self._next_trial(target)
                if trial is None:
                    if running == 0:
                        break
                    # other workers' trials run; one may die and its retry need a worker
                    stop.wait(min(_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
                    continue
                record = self._run_trial(trial)
                ran.append(record)
                fails = fails + 1 if record.state == "FAIL" else 0
                if fails >= _MAX_FAILS_IN_A_ROW:
                    raise RunError(f"{fails} trials failed in a row; last: trial "
                                   f"{record.number}: {record.note}")
        return ran

    def _next_trial(self, target: int) -> tuple[optuna.Trial | None, int]:
        with self.store.lock():
            for failed in self.store.heartbeat.fail_stale(self.study):
                log.warning("trial %d: worker stopped beating; marked FAIL", failed.number)
                retry_once(self.study, failed)
            n = Counter(t.state for t in self.study.get_trials(deepcopy=False))
            started = n[TrialState.COMPLETE] + n[TrialState.PRUNED] + n[TrialState.RUNNING]
            waiting = n[TrialState.WAITING]
            # ask() takes a queued retry (WAITING, already part of the total) first: it may
            # start while C + P + R < N; a brand-new trial needs C + P + R + WAITING < N
            room = started < target if waiting else started + waiting < target
            if not room:
                return None, n[TrialState.RUNNING]
            with warnings.catch_warnings():
                # optuna warns that RDB heartbeats expect study.optimize; dlopt beats itself
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = self.study.ask()
            self.store.heartbeat.beat(trial._trial_id)
            return trial, n[TrialState.RUNNING] + 1

    def _run_trial(self, trial: optuna.Trial) -> TrialRecord:
        t0 = time.perf_counter()
        retry_of = trial.user_attrs.get("retry_of")
        run_dir = trial_dir(self.study_dir, trial.number)
        ctx = TrialContext(trial, run_dir=run_dir, params={}, policy=self.plan.policy,
                           resume_from=None if retry_of is None else trial_dir(self.study_dir, retry_of))
        state, values, note, metrics = TrialState.FAIL, None, "", {}
        fatal: Exception | None = None
        try:
            with HeartbeatThread(self.store.heartbeat, trial._trial_id):
                ctx.params = self.plan.space.sample(trial, self.base)
                run_cfg = SearchSpace.apply(self.cfg, {
                    **ctx.params, "name": f"{self.study.study_name}-{trial.number:04d}",
                    "train.progress": False,
                })
                ctx.last_step = run_cfg.train.epochs * (run_cfg.train.cv or 1)
                metrics = dict(self.objective(run_cfg, ctx))
                values = self._values(metrics)
                self._check_constraint_metrics({**ctx.static, **metrics})
                state = TrialState.COMPLETE
        except optuna.TrialPruned as exc:
            state, note = TrialState.PRUNED, str(exc)
        except KeyboardInterrupt:
            self._finish(trial, TrialState.FAIL, None, ctx, metrics, "interrupted", t0)
            raise
        except Exception as exc:
            if _terminated(exc):
                # SIGTERM stops this worker, not just the trial: fail it, queue its retry;
                # its note says tune's way on (dlopt tune has no --resume)
                note = _tune_hint(_one_line(exc))
                self._finish(trial, TrialState.FAIL, None, ctx, metrics, note, t0)
                raise
            # every later trial would miss the metric too: end the study after recording this one
            fatal = exc if isinstance(exc, _NoSuchMetric) else None
            note = str(exc) if fatal else _one_line(exc)
            if fatal is None:  # the error line says it
                log.warning("trial %d failed: %s", trial.number, note)
            log.debug("trial %d traceback:\n%s", trial.number, traceback.format_exc())
        finally:
            _collect()
        record = self._finish(trial, state, values, ctx, metrics, note, t0, retry_of)
        keep_best_artifacts(self.study, self.study_dir, self.plan.directions,
                            self.cfg.search.keep_checkpoints)
        self._write_tables()
        if self.on_trial is not None:
            self.on_trial(record)
        if fatal is not None:
            raise fatal
        return record

    def _values(self, metrics: Mapping[str, float]) -> list[float]:
        missing = [m for m in self.plan.metrics if m not in metrics]
        if missing:
            raise _NoSuchMetric(f"search.objectives: the trial reported no {', '.join(missing)}; "
                                f"it reports: {', '.join(sorted(metrics)) or 'nothing'}")
        return [float(metrics[m]) for m in self.plan.metrics]

    def _check_constraint_metrics(self, known: Mapping[str, float]) -> None:
        # a misspelled constraint metric would count as met (0.0: unknown) on every trial
        missing = sorted({c.metric for c in self.plan.policy.constraints} - set(known))
        if missing:
            raise _NoSuchMetric(f"search.constraints: the trial reported no {', '.join(missing)}; "
                                f"it reports: {', '.join(sorted(known)) or 'nothing'}")

    def _finish(self, trial: optuna.Trial, state: TrialState, values: list[float] | None,
                ctx: TrialContext, metrics: Mapping[str, float], note: str, t0: float,
                retry_of: int | None = None) -> TrialRecord:
        seconds = round(time.perf_counter() - t0, 3)
        known = {**ctx.static, **metrics}
        constraints = constraint_values(self.plan.policy.constraints, known)
        attrs = {"epochs": ctx.epochs, "seconds": seconds, "constraints": constraints}
        if metrics:
            attrs["metrics"] = {k: float(v) for k, v in metrics.items()}
        if note:
            attrs["error" if state == TrialState.FAIL else "note"] = note
        try:
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
            # optuna's own record: TPE, best_trial, the Pareto plot and the dashboard read it
            for spec, value in zip(self.plan.policy.constraints, constraints):
                trial.set_constraint(_constraint_key(spec), value)
            if state == TrialState.COMPLETE:
                self.study.tell(trial, values)
            else:
                self.study.tell(trial, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            # another worker took this trial for dead (and queued its retry)
            log.warning("trial %d was failed by another worker (stale heartbeat); result dropped",
                        trial.number)
        else:
            if state == TrialState.FAIL:
                retry_once(self.study, self.study._storage.get_trial(trial._trial_id))
        final = self.study._storage.get_trial(trial._trial_id)
        values = zip(self.plan.metrics, measured_values(final, self.plan.metrics))
        return TrialRecord(
            trial.number, final.state.name, {m: v for m, v in values if v is not None},
            dict(final.params), ctx.epochs, seconds, note, retry_of,
        )


class _NoSuchMetric(ConfigError):
    """An objective names a metric the trial's run does not report (exit 2, no more trials)."""


def _collect() -> None:
    """Free the finished trial's model and optimizer, including reference cycles.

    A full collection scans every object of the process (~0.2 s once torch is loaded);
    freezing the survivors afterwards keeps later collections to the objects created since.
    Frozen objects are still freed by reference counting; :func:`tune` unfreezes at the end.
    """
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def _sigterm_flag() -> Iterator[threading.Event]:
    """Between trials, SIGTERM sets the flag instead of killing the process at a random point
    (mid-write of the journal). During a trial the training loop's own handler takes over and
    stops at a step boundary, or, when the signal comes after the last step, hands it back
    here. Signals go to the main thread only: elsewhere nothing changes."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminated_between_trials() -> Exception:
    from dlopt.train import Terminated

    return Terminated("stopped by SIGTERM between trials; rerun the same command to continue")


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C or SIGTERM: the worker stops, its running trial failed and queued for retry."""
    return isinstance(exc, KeyboardInterrupt) or _terminated(exc)


def _terminated(exc: BaseException) -> bool:
    """True for the training loop's answer to SIGTERM (checkpoint saved, run stopped)."""
    from dlopt.train import Terminated

    return isinstance(exc, Terminated)


def _tune_hint(message: str) -> str:
    """``message`` with dlopt tune's way on in place of dlopt train's "--resume"."""
    from dlopt.train.callbacks.signals import with_resume_hint
    from dlopt.tune import RESUME_HINT

    return with_resume_hint(message, RESUME_HINT)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__


def _read_best(sdir: Path) -> dict[str, Any] | None:
    import json

    path = sdir / "best_params.json"
    return json.loads(path.read_text()) if path.exists() else None


# ----------------------------------------------------------------------- worker processes
def _spawn_worker(cfg: "TuneConfig", kwargs: dict[str, Any]) -> Any:
    """Start a worker process (spawned: no forked torch/optuna state). ``objective`` and
    ``on_trial`` travel by pickle, so they must be importable module-level functions."""
    ctx = multiprocessing.get_context("spawn")
    # optuna's logging as the parent has it: its level, and whether its lines go through
    # Python logging (the CLI's one-line format) instead of optuna's own handler
    optuna_log = (optuna.logging.get_verbosity(), logging.getLogger("optuna").propagate)
    p = ctx.Process(target=_worker_main, daemon=False, args=(
        cfg.model_dump(mode="json"), kwargs, optuna_log))
    p.start()
    return p


def _worker_main(cfg_data: dict[str, Any], kwargs: dict[str, Any],
                 optuna_log: tuple[int, bool]) -> None:
    from dlopt.config import TuneConfig, parse_config

    verbosity, propagate = optuna_log
    optuna.logging.set_verbosity(verbosity)
    if propagate:
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()
    try:
        # the parent passed every option but these; one worker: this process
        _tune(parse_config(cfg_data, TuneConfig), **kwargs, workers=1, notes=False)
    except KeyboardInterrupt:  # Ctrl-C reaches every process: the parent says "interrupted"
        sys.exit(130)
    except DloptError as exc:  # one line, as the CLI would say it, not a traceback
        # dlopt tune has no --resume: the worker says tune's way on, as the CLI does
        log.error("worker process: %s", _tune_hint(str(exc)))
        sys.exit(exc.exit_code)
