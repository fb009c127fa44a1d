"""Where a study lives, how workers take turns, and how a dead worker's trial is noticed.

Every storage gives three things:

* ``storage`` for ``optuna.create_study`` (plain optuna formats: ``optuna.load_study`` and
  optuna-dashboard read them);
* ``lock()``: a context manager held while a worker counts trials and asks for a new one, so
  a study never exceeds its target (a ``fcntl`` lock on a side file for journal and SQLite,
  a PostgreSQL advisory lock for PostgreSQL, a ``SELECT ... FOR UPDATE`` row lock in a
  ``dlopt_locks`` table for other SQLAlchemy databases, a thread lock in memory);
* a heartbeat: the worker running a trial beats every ``interval`` seconds; another worker
  that finds a RUNNING trial silent for ``grace`` seconds marks it FAIL and queues one retry.
  RDB storages use optuna's own heartbeat table; the journal has none, so dlopt keeps the
  last beat in the trial's ``heartbeat`` user attribute.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import math
import os
import re
import signal
import threading
import time
import uuid
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from dlopt._fslock import hold_exclusive
from dlopt.errors import ConfigError, first_line
from dlopt.registry import Registry

log = logging.getLogger(__name__)

__all__ = ["StudyStorage", "open_storage", "claim_folder", "retry_once", "HeartbeatThread", "STORAGES",
           "HEARTBEAT_ATTR", "RETRY_ATTR"]

HEARTBEAT_ATTR = "heartbeat"
RETRY_ATTR = "retry_of"
# per-attempt attributes a retry must not inherit
_ATTEMPT_ATTRS = {HEARTBEAT_ATTR, "error", "note", "epochs", "curve", "static", "metrics",
                  "constraints", "seconds"}

STORAGES: Registry = Registry("storage", error=ConfigError)


@dataclass
class StudyStorage:
    """An opened storage: what optuna gets, the exact-N lock and the heartbeat."""

    url: str
    kind: str
    storage: BaseStorage
    lock: Callable[[], ContextManager[None]]
    heartbeat: "_Heartbeat"
    _close: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Release worker locks and connections."""
        for fn in self._close:
            fn()
        self._close.clear()


def open_storage(
    spec: str | None,
    *,
    study_dir: Path,
    study_name: str,
    interval: float,
    grace: float,
    workers: int = 1,
) -> StudyStorage:
    """Open ``spec`` (None: ``<study_dir>/study.log``); see the module docstring for kinds."""
    spec = spec or f"journal:{study_dir / 'study.log'}"
    if spec == "memory":
        scheme, rest = "memory", ""
    elif spec.startswith("journal:"):
        scheme, rest = "journal", spec[len("journal:"):]
    elif spec.startswith(("sqlite:///", "sqlite+")):
        scheme, rest = "sqlite", spec
    elif spec.startswith(("postgresql://", "postgresql+", "postgres://")):
        scheme, rest = "postgresql", _pg_driver_url(spec)
    elif _SQLALCHEMY_URL.match(spec) and _known_dialect(spec):
        scheme, rest = "rdb", spec  # mysql+pymysql://..., oracle+oracledb://..., ...
    elif spec.endswith(".log") and "://" not in spec:
        scheme, rest = "journal", spec  # a bare journal file, as optuna-dashboard takes it
    else:
        raise ConfigError(
            f"--storage {spec!r}: unknown storage; allowed: memory, journal:PATH (or "
            f"PATH.log), sqlite:///FILE.db, postgresql://USER:PASS@HOST/DB or another "
            f"SQLAlchemy URL"
        )
    if scheme in ("journal", "sqlite") and not _file_of(scheme, rest).strip():
        raise ConfigError(f"--storage {spec!r}: needs a file path")
    try:
        return STORAGES.create(scheme, target=rest, study_name=study_name, interval=interval,
                               grace=grace, workers=workers)
    except Exception as exc:
        if not _unopenable(exc):
            raise
        raise ConfigError(f"--storage {spec!r}: cannot open it: {first_line(exc)}") from None


def _unopenable(exc: Exception) -> bool:
    """True for the user's storage being unusable (a path under a file, an unwritable place,
    a bad port, a file that is no database, a directory): a config error, not a dlopt bug."""
    if isinstance(exc, (OSError, ValueError)):
        return True
    import sqlalchemy.exc  # only here: sqlalchemy loads with optuna's RDB storage anyway

    return isinstance(exc, sqlalchemy.exc.SQLAlchemyError)


_OWNER_FILE = "storage.txt"
_STUDY_LINE = "study: "


def claim_folder(study_dir: Path, store: StudyStorage, study: str) -> None:
    """Record which storage and study ``study_dir`` belongs to; refuse another one there: its
    trial numbers start at 0 again and would overwrite this study's trials/NNNN and tables.
    (Memory studies may share a folder: each is gone when its process ends.)"""
    mark = study_dir / _OWNER_FILE
    mine = _identity(store)
    try:
        lines = mark.read_text().splitlines()
    except FileNotFoundError:
        lines = []  # a new folder
    owner = lines[0].strip() if lines else ""
    # a dlopt before this one recorded no study: the first study to come takes the folder
    named = next((ln[len(_STUDY_LINE):] for ln in lines[1:] if ln.startswith(_STUDY_LINE)), "")
    if owner and owner != mine:
        raise ConfigError(f"{study_dir} holds the study of --storage {owner}, not {mine}; "
                          f"use another --study name (or --study-dir)")
    if named and named != study and store.kind != "memory":
        raise ConfigError(f"{study_dir} holds study {named!r}, not {study!r}; use another "
                          f"--study-dir (or --study {named})")
    if not owner or not named:
        # several workers (processes or threads) may claim at once: a temp file each, the
        # same text, whole-file replaces
        tmp = mark.with_name(f".{mark.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(f"{mine}\n{_STUDY_LINE}{study}\n")
        os.replace(tmp, mark)


def _identity(store: StudyStorage) -> str:
    """``store.url`` (password already masked) with a file path made absolute, so the same
    journal or SQLite file named from another directory is the same storage."""
    if store.kind == "journal":
        return f"journal:{Path(store.url[len('journal:'):]).resolve()}"
    if store.kind == "sqlite":
        head, sep, path = store.url.partition(":///")
        return f"{head}{sep}{Path(path).expanduser().resolve()}" if sep else store.url
    return store.url


def _file_of(scheme: str, target: str) -> str:
    """The file a journal path or an SQLite URL names ('' for none)."""
    if scheme == "journal":
        return target
    _, sep, rest = target.partition(":///")
    return rest if sep else ""


# dialect[+driver]://... (SQLAlchemy's URL form)
_SQLALCHEMY_URL = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\+[A-Za-z0-9_]+)?://")


def _known_dialect(url: str) -> bool:
    """True when SQLAlchemy has a dialect for ``url`` (its driver may still be missing)."""
    import sqlalchemy

    try:
        sqlalchemy.engine.make_url(url).get_dialect()
    except (sqlalchemy.exc.NoSuchModuleError, sqlalchemy.exc.ArgumentError):
        return False
    except ImportError:
        return True  # a known dialect whose driver is not installed: say so when connecting
    return True


def _pg_driver_url(url: str) -> str:
    """Name the installed driver: SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3,
    while dlopt's ``postgres`` extra installs psycopg2."""
    url = url.replace("postgres://", "postgresql://", 1)  # SQLAlchemy knows the long name only
    if not url.startswith("postgresql://"):
        return url  # the user named a driver
    for driver in ("psycopg2", "psycopg"):
        if importlib.util.find_spec(driver) is not None:
            return f"postgresql+{driver}://" + url[len("postgresql://"):]
    raise ConfigError("--storage postgresql: no PostgreSQL driver; pip install 'dlopt[postgres]'")


# ------------------------------------------------------------------------------ heartbeat
class _Heartbeat:
    """Beats for one trial; finds trials whose worker stopped beating."""

    def __init__(self, storage: BaseStorage, interval: float, grace: float) -> None:
        self.storage = storage
        self.interval = interval
        self.grace = grace

    def beat(self, trial_id: int) -> None:
        raise NotImplementedError

    def fail_stale(self, study: optuna.Study) -> list[FrozenTrial]:
        """Mark silent RUNNING trials FAIL; return those this call failed."""
        raise NotImplementedError


class _AttrHeartbeat(_Heartbeat):
    """The last beat is a Unix time in the trial's ``heartbeat`` user attribute."""

    def beat(self, trial_id: int) -> None:
        self.storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def fail_stale(self, study: optuna.Study) -> list[FrozenTrial]:
        now = time.time()
        failed = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            start = t.datetime_start.timestamp() if t.datetime_start else now
            last = float(t.user_attrs.get(HEARTBEAT_ATTR, start))
            if now - last <= self.grace:
                continue
            try:
                if self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    failed.append(t)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # its worker finished it meanwhile
        return failed


class _RdbHeartbeat(_Heartbeat):
    """optuna's RDB heartbeat table (server-side timestamps: safe across machines)."""

    def __init__(self, storage: BaseStorage, interval: float, grace: float) -> None:
        super().__init__(storage, interval, grace)
        self._failed: list[FrozenTrial] = []

    def collect(self, study: optuna.Study, trial: FrozenTrial) -> None:
        # optuna calls this for each trial fail_stale_trials just failed
        self._failed.append(trial)

    def beat(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]

    def fail_stale(self, study: optuna.Study) -> list[FrozenTrial]:
        self._failed = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        return self._failed


class HeartbeatThread:
    """Daemon thread beating for ``trial_id`` while the ``with`` block runs."""

    def __init__(self, heartbeat: _Heartbeat, trial_id: int) -> None:
        self._hb = heartbeat
        self._trial_id = trial_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"dlopt-heartbeat-{trial_id}",
                                        daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._hb.interval):
            try:
                self._hb.beat(self._trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                log.warning("trial id %d was finished by another worker (heartbeat late)",
                            self._trial_id)
                return
            except Exception as exc:  # a flaky storage must not kill the trial
                log.warning("heartbeat for trial id %d failed: %s", self._trial_id, exc)

    def __enter__(self) -> "HeartbeatThread":
        self._hb.beat(self._trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def retry_once(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Queue a WAITING copy of a failed trial (same parameters) unless it is a retry itself.

    The copy carries ``retry_of`` (user attribute) and optuna's ``failed_trial`` /
    ``retry_history`` system attributes, so ``RetryHeartbeatStaleTrialCallback`` helpers
    read it too.
    """
    if RETRY_ATTR in trial.user_attrs:
        return False
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in _ATTEMPT_ATTRS}
    user_attrs[RETRY_ATTR] = trial.number
    system_attrs = {k: v for k, v in trial.system_attrs.items()
                    if k in ("grid_id", "search_space")}
    system_attrs.update(failed_trial=trial.number, retry_history=[trial.number])
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=user_attrs, system_attrs=system_attrs,
    ))
    log.info("trial %d failed; queued its retry", trial.number)
    return True


# ---------------------------------------------------------------------------------- locks
def _file_lock(path: Path) -> Callable[[], ContextManager[None]]:
    """An exclusive ``flock`` on ``path``; the kernel drops it if the holder dies."""

    @contextlib.contextmanager
    def lock() -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    return lock


def _thread_lock() -> Callable[[], ContextManager[None]]:
    mutex = threading.Lock()

    @contextlib.contextmanager
    def lock() -> Iterator[None]:
        with mutex:
            yield

    return lock


def _pg_advisory_locks(url: str, *names: str) -> tuple[list[Callable[[], ContextManager[None]]], Callable[[], None]]:
    """Session-level PostgreSQL advisory locks, one per name, and the engine's dispose."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(url, poolclass=NullPool)

    def make(key: int) -> Callable[[], ContextManager[None]]:
        @contextlib.contextmanager
        def lock() -> Iterator[None]:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()

        return lock

    return [make(zlib.crc32(f"dlopt:{n}".encode())) for n in names], engine.dispose


def _row_locks(url: str, *names: str) -> tuple[list[Callable[[], ContextManager[None]]], Callable[[], None]]:
    """Row locks (``SELECT ... FOR UPDATE`` held for a transaction) in a ``dlopt_locks``
    table: a portable lock for SQLAlchemy databases without advisory locks (MySQL, Oracle,
    SQL Server), and the engine's dispose."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    keys = [f"dlopt:{n}"[:255] for n in names]
    engine = sa.create_engine(url, poolclass=NullPool)
    table = sa.Table("dlopt_locks", sa.MetaData(), sa.Column("name", sa.String(255),
                                                             primary_key=True))
    for attempt in range(3):  # two workers starting at once race to create the table/rows
        try:
            table.metadata.create_all(engine)
            with engine.begin() as conn:
                have = set(conn.scalars(sa.select(table.c.name)))
                for key in keys:
                    if key not in have:
                        conn.execute(table.insert().values(name=key))
            break
        except sa.exc.IntegrityError:
            continue
        except sa.exc.ProgrammingError:
            if attempt == 2:
                raise

    def make(key: str) -> Callable[[], ContextManager[None]]:
        @contextlib.contextmanager
        def lock() -> Iterator[None]:
            with engine.begin() as conn:  # the row stays locked until this commits
                conn.execute(sa.select(table.c.name).where(table.c.name == key)
                             .with_for_update())
                yield

        return lock

    return [make(key) for key in keys], engine.dispose


def _rdb(url: str, interval: float, grace: float) -> tuple[BaseStorage, _RdbHeartbeat]:
    hb = _RdbHeartbeat(None, interval, grace)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # optuna's heartbeat settings are whole seconds
        hb.storage = optuna.storages.RDBStorage(
            url, heartbeat_interval=max(1, math.ceil(interval)),
            grace_period=max(2, math.ceil(grace)), heartbeat_stale_trial_callback=hb.collect,
        )
    return hb.storage, hb


# ------------------------------------------------------------------------------- registry
@STORAGES.register("memory")
def _memory(*, target: str, study_name: str, interval: float, grace: float,
            workers: int) -> StudyStorage:
    if workers > 1:
        raise ConfigError("--storage memory: one process only; use journal:PATH for --workers")
    storage = optuna.storages.InMemoryStorage()
    return StudyStorage("memory", "memory", storage, _thread_lock(),
                        _AttrHeartbeat(storage, interval, grace))


def _journal_lock(path: Path) -> Any:
    """optuna's journal file lock (the same ``PATH.lock`` file its readers use), with Ctrl-C
    held off while the lock is taken, held or given back. optuna's own lock, interrupted
    there, can leave its lock file behind (every later write, this study's next run included,
    then waits its 30 s grace period) and surface as a FileNotFoundError instead of the
    interrupt; held off, the KeyboardInterrupt comes right after the lock is given back."""
    from optuna.storages.journal import JournalFileSymlinkLock

    class _Lock(JournalFileSymlinkLock):
        def __init__(self, filepath: str) -> None:
            super().__init__(filepath)
            self._held = threading.local()  # the heartbeat thread writes too

        def acquire(self) -> bool:
            self._held.sigint = _SigintHeld()
            try:
                return super().acquire()
            except BaseException:
                self._held.sigint.close()
                raise

        def release(self) -> None:
            try:
                super().release()
            finally:
                self._held.sigint.close()

    return _Lock(str(path))


class _SigintHeld:
    """SIGINT recorded instead of raised until ``close()``, then raised again. Only in the
    main thread, where Python raises it; elsewhere nothing changes."""

    def __init__(self) -> None:
        self.received = False
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:
            self.previous = signal.signal(signal.SIGINT, self._record)

    def _record(self, signum: int, frame: Any) -> None:
        self.received = True

    def close(self) -> None:
        if not self.active:
            return
        self.active = False
        # None: a handler set outside Python; the default is what Python started with
        signal.signal(signal.SIGINT, signal.default_int_handler if self.previous is None
                      else self.previous)
        if self.received:
            signal.raise_signal(signal.SIGINT)


@STORAGES.register("journal")
def _journal(*, target: str, study_name: str, interval: float, grace: float,
             workers: int) -> StudyStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = Path(target).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(path), lock_obj=_journal_lock(path)))
    return StudyStorage(f"journal:{path}", "journal", storage,
                        _file_lock(path.with_name(path.name + ".dlopt-lock")),
                        _AttrHeartbeat(storage, interval, grace))


@STORAGES.register("sqlite")
def _sqlite(*, target: str, study_name: str, interval: float, grace: float,
            workers: int) -> StudyStorage:
    path = Path(_file_of("sqlite", target)).expanduser()
    instead = "use journal:PATH (one machine) or postgresql://... (several) for parallel work"
    if workers > 1:
        raise ConfigError(f"--storage {target}: SQLite takes one worker, not {workers}; {instead}")
    path.parent.mkdir(parents=True, exist_ok=True)
    release = hold_exclusive(
        path.with_name(path.name + ".dlopt-worker"),
        f"--storage {target}: SQLite takes one worker and another dlopt tune uses it; {instead}")
    try:
        storage, hb = _rdb(target, interval, grace)
    except Exception:
        release()  # a retry in this process (a fixed path) must find the worker lock free
        raise
    return StudyStorage(target, "sqlite", storage,
                        _file_lock(path.with_name(path.name + ".dlopt-lock")), hb,
                        _close=[release])


@STORAGES.register("postgresql")
def _postgresql(*, target: str, study_name: str, interval: float, grace: float,
                workers: int) -> StudyStorage:
    (schema_lock, study_lock), dispose = _pg_advisory_locks(target, "schema", f"study:{study_name}")
    try:
        # optuna creates its tables on first use: two workers starting at once would race
        with schema_lock():
            storage, hb = _rdb(target, interval, grace)
    except Exception as exc:  # connection refused, bad credentials, unknown database
        dispose()
        raise ConfigError(f"--storage {_redact(target)}: cannot connect: {first_line(exc)}") from None
    return StudyStorage(_redact(target), "postgresql", storage, study_lock, hb, _close=[dispose])


@STORAGES.register("rdb")
def _other_rdb(*, target: str, study_name: str, interval: float, grace: float,
               workers: int) -> StudyStorage:
    try:
        (schema_lock, study_lock), dispose = _row_locks(target, "schema", f"study:{study_name}")
    except Exception as exc:  # no driver, connection refused, bad credentials
        raise ConfigError(f"--storage {_redact(target)}: cannot connect: {first_line(exc)}") from None
    try:
        with schema_lock():
            storage, hb = _rdb(target, interval, grace)
    except Exception as exc:
        dispose()
        raise ConfigError(f"--storage {_redact(target)}: cannot connect: {first_line(exc)}") from None
    return StudyStorage(_redact(target), "rdb", storage, study_lock, hb, _close=[dispose])


def _redact(url: str) -> str:
    """The URL without its password (it ends up in logs and outputs)."""
    head, sep, tail = url.partition("://")
    if "@" not in tail:
        return url
    cred, _, host = tail.rpartition("@")
    user = cred.split(":")[0]
    return f"{head}{sep}{user}:***@{host}" if ":" in cred else url
