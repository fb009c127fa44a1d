"""Run a validated pipeline stage by stage, with caching and resume.

Layout::

    runs/<pipeline>/
        pipeline.yaml        the resolved pipeline (re-runnable)
        results.json         every stage's record, environment, commands (rewritten per stage)
        .lock                locked by the dlopt run working here (a second one is refused)
        report.html/.md      written at the end (``dlopt.report``)
        <stage>/
            .key             cache key of the attempt in progress (written first)
            stage.json       the finished stage's record (written last, atomically)
            ...              the stage's own outputs (run/, model.onnx, bench.json, ...)

A stage's cache key hashes its type, its options, the pipeline ``base`` (for stages that
train) and its inputs' keys, so a change reruns that stage and everything downstream.
On a rerun a stage is skipped when ``stage.json`` holds the same key; it resumes inside its
directory when ``.key`` matches but ``stage.json`` is missing (it was interrupted: training
stages continue from ``checkpoints/last``); otherwise its directory is cleared first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from dlopt._files import remove_path
from dlopt._fslock import hold_exclusive
from dlopt.config import recorded_paths
from dlopt.errors import ConfigError, DloptError, RunError
from dlopt.pipeline._context import StageContext, StageRecord
from dlopt.pipeline._fingerprint import data_fingerprint
from dlopt.pipeline._stages import STAGES
from dlopt.pipeline._schema import PipelineConfig, stage_order

log = logging.getLogger(__name__)

__all__ = ["PipelineResult", "run_pipeline", "stage_key", "RESULTS", "KEY_VERSION"]

RESULTS = "results.json"
LOCK = ".lock"  # held (flock) by the dlopt run working in the directory
_MODEL_ARTIFACTS = ("run", "onnx")  # what later stages load: a cached stage must still hold them
KEY_VERSION = 1  # bump when a stage's outputs change meaning, to invalidate old caches


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` did: the run directory, every stage's record (run order)
    and the report files."""

    root: Path
    records: list[StageRecord]
    report: dict[str, Path] = field(default_factory=dict)
    removed_report: bool = False  # report=False removed an earlier report the stages that ran made stale


def stage_key(cfg: PipelineConfig, name: str, options: Any, records: dict[str, StageRecord], *,
              digests: dict[Path, str] | None = None) -> str:
    """Hash of what determines a stage's outputs: type, options, base (training stages),
    what its inputs produced (:attr:`StageRecord.output_id`), and the size and time of the
    user data files they name (``digests``: those already taken in this run, by path)."""
    spec = cfg.stage(name)
    info = STAGES.get(spec.kind).info
    opts = options.model_dump(mode="json")
    work, budget = _split_budget(opts, info.get("budget", ()))
    doc = {"v": KEY_VERSION, "type": spec.kind, "options": work,
           "base": cfg.base if info.get("uses_base") else None,
           "inputs": {"input": spec.input, "inputs": spec.inputs},
           "input_keys": [records[r].output_id for r in spec.refs()]}
    data = data_fingerprint(cfg.base if info.get("uses_base") else None, opts, memo=digests)
    if data:  # only user data files: keys over built-in datasets stay as they were
        doc["data"] = data
    key = _hash(doc)
    return f"{key}+{_hash(budget)[:8]}" if info.get("budget") else key


def _hash(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _split_budget(opts: dict[str, Any], paths: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(opts without the budget, the budget)``: the options at the dotted ``paths`` say how
    long a stage works (a study's trial count and timeout), not what it works on, so they
    form a key suffix of their own and a larger budget continues the work in place."""
    work = json.loads(json.dumps(opts))
    budget: dict[str, Any] = {}
    for path in paths:
        *parents, last = path.split(".")
        node: Any = work
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            budget[path] = node.pop(last)
    return work, budget


def _work_key(key: str) -> str:
    """A key without its budget suffix: what the stage works on."""
    return key.split("+", 1)[0]


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _run_command(cfg: PipelineConfig, root: Path, source: str | None, root_given: bool) -> str:
    """The ``dlopt run`` line that redoes this run: the file, its ``--set`` overrides and
    ``--run-dir`` (when one was given). Without a source file, the resolved
    ``pipeline.yaml`` already holds the overrides, but its default directory may differ."""
    if source is None:
        return shlex.join(["dlopt", "run", str(root / "pipeline.yaml"), "--run-dir", str(root)])
    args = ["dlopt", "run", source]
    for over in cfg.overrides:
        args += ["--set", over]
    if root_given:
        args += ["--run-dir", str(root)]
    return shlex.join(args)


def _write_results(root: Path, cfg: PipelineConfig, records: Iterable[StageRecord], run_command: str,
                   source: str | None, environment: dict[str, Any]) -> None:
    recs = list(records)
    src = source or str(root / "pipeline.yaml")
    commands = [run_command, shlex.join(["dlopt", "report", str(root)])]
    doc = {"schema_version": 1, "pipeline": cfg.name, "source": src, "root": str(root),
           "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "stages": [r.to_dict() for r in recs], "environment": environment,
           "commands": commands, "stage_commands": {r.name: r.commands for r in recs}}
    _atomic_text(root / RESULTS, json.dumps(doc, indent=1, default=str) + "\n")


def _kept_environment(root: Path) -> dict[str, Any] | None:
    """The environment ``results.json`` recorded, when readable: a rerun in which every stage
    is cached reports the machine and threads that produced the results, not its own."""
    try:
        env = json.loads((root / RESULTS).read_text()).get("environment")
    except (OSError, ValueError, AttributeError):
        return None
    return env if isinstance(env, dict) and env else None


def _environment() -> dict[str, Any]:
    import torch

    from dlopt.deploy import capture_environment

    env = capture_environment(torch.get_num_threads())
    env["torch_threads"] = torch.get_num_threads()
    return env


def _run_stage(ctx: StageContext, options: Any) -> Any:
    fn = STAGES.get(ctx.spec.kind).factory
    try:
        return fn(ctx, options)
    except DloptError as err:
        raise type(err)(f"stage {ctx.spec.name!r}: {err}") from None
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001  one line for the user, the traceback in the log
        log.debug("stage %s failed", ctx.spec.name, exc_info=True)
        first = (str(exc).splitlines() or [""])[0]
        raise RunError(f"stage {ctx.spec.name!r} failed: {type(exc).__name__}: {first}") from None


def _cached(spec: Any, key: str, d: Path, forced: set[str]) -> StageRecord | None:
    """The stage's finished record when it can be reused as it is, else None."""
    done = StageRecord.read(d)
    if done is None or done.key != key or spec.name in forced:
        return None
    missing = [a for a in done.artifacts if a in _MODEL_ARTIFACTS and not done.path(a).exists()]
    if missing:  # deleted by hand since: the record alone is not the stage's model
        log.warning("stage %s: its %s is missing; running it again", spec.name, ", ".join(missing))
        return None
    done.status = "cached"
    return done


def _execute(cfg: PipelineConfig, spec: Any, key: str, d: Path, options: Any,
             records: dict[str, StageRecord], resume: bool, run_command: str) -> StageRecord:
    """Run one stage in ``d`` (cleared first unless it resumes) and store its record."""
    if not resume and d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    _atomic_text(d / ".key", key + "\n")
    (d / "stage.json").unlink(missing_ok=True)
    log.info("stage %s (%s): %s", spec.name, spec.kind, "resuming" if resume else "running")
    t0 = time.perf_counter()
    out = _run_stage(StageContext(cfg, spec, d, records, resume=resume, run_command=run_command), options)
    rec = StageRecord(name=spec.name, type=spec.kind, key=key, dir=d,
                      produces=STAGES.get(spec.kind).info["produces"], metrics=out.metrics,
                      timings=out.timings, artifacts=out.artifacts, commands=out.commands,
                      inputs=spec.refs(), seconds=time.perf_counter() - t0,
                      status="resumed" if resume else "ran",
                      digest=_output_digest(d, out, STAGES.get(spec.kind).info.get("budget_metrics", ())))
    _atomic_text(d / "stage.json", json.dumps(rec.to_dict(), indent=1, default=str) + "\n")
    return rec


_DIGESTED = ("run", "onnx", "best_config")  # the artifacts later stages read


def _output_digest(d: Path, out: Any, skip: Iterable[str] = ()) -> str:
    """Digest of a finished stage's metrics (less ``skip``: counts that grow with its budget,
    such as a study's trials, while what later stages read stays the same) and the files later
    stages read (a run's weights, an ONNX file, a best config)."""
    metrics = {k: v for k, v in out.metrics.items() if k not in set(skip)}
    h = hashlib.sha256(json.dumps(metrics, sort_keys=True, default=str).encode())
    for name in sorted(a for a in out.artifacts if a in _DIGESTED):
        path = d / out.artifacts[name]
        path = path / "model.safetensors" if path.is_dir() else path
        if path.is_file():
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def _report_after_failure(root: Path) -> None:
    # the report of an earlier run would still show the failed stage's old results
    from dlopt.report import build_report

    try:
        build_report(root)
    except Exception:  # noqa: BLE001  the stage's own error is the one to show
        log.warning("could not rewrite the report of %s after the failure", root, exc_info=True)


def _resumes(spec: Any, key: str, d: Path, forced: set[str]) -> bool:
    """An interrupted attempt with the same key (``.key`` without ``stage.json``) continues,
    and so does a stage whose key differs only in its budget (a study given more trials),
    finished or not."""
    if spec.name in forced:
        return False
    done = StageRecord.read(d)
    if done is not None:  # the same key (a deleted model) runs again from scratch
        return done.key != key and _work_key(done.key) == _work_key(key)
    key_file = d / ".key"
    return key_file.is_file() and _work_key(key_file.read_text().strip()) == _work_key(key)


@dataclass
class _Results:
    """``results.json`` of one ``run_pipeline`` call. Its environment stays the one recorded
    by the run that produced the results until a stage runs here: a rerun in which every
    stage is cached must not report its own machine and threads beside the old numbers."""

    root: Path
    cfg: PipelineConfig
    run_command: str
    source: str | None
    env: dict[str, Any] | None = None
    fresh: bool = False

    def write(self, records: Iterable[StageRecord], *, running: bool = False) -> None:
        if running and not self.fresh:
            self.env, self.fresh = _environment(), True
        self.env = self.env or _environment()
        _write_results(self.root, self.cfg, records, self.run_command, self.source, self.env)


def run_pipeline(cfg: PipelineConfig, options: dict[str, Any], *, source: str | Path | None = None,
                 root: str | Path | None = None, force: Iterable[str] = (), report: bool = True,
                 on_stage: Callable[[StageRecord], None] | None = None,
                 on_start: Callable[[str, str], None] | None = None) -> PipelineResult:
    """Run every stage of a validated pipeline (see :func:`dlopt.pipeline.load_pipeline`) in
    ``root`` (default ``<runs_dir>/<name>``), skipping cached ones; ``force`` names stages
    to redo anyway. ``on_start(name, how)`` / ``on_stage(record)`` report progress.

    ``results.json`` lists the stages finished so far and is rewritten before and after
    each stage that runs, so after a failure it (and the report) no longer shows the failed
    stage's results from an earlier run."""
    root_given = root is not None
    root = Path(root) if root is not None else Path(cfg.runs_dir) / cfg.name
    forced = set(force)
    unknown = forced - {s.name for s in cfg.stages}
    if unknown:
        raise ConfigError(f"--force {sorted(unknown)[0]!r} is not a stage; allowed: "
                          f"{', '.join(s.name for s in cfg.stages)}")
    src = str(source) if source else None
    run_command = _run_command(cfg, root, src, root_given)
    release = _claim_root(root)
    try:
        recorded = _recorded(cfg.model_dump(mode="json", exclude_defaults=True))
        _atomic_text(root / "pipeline.yaml", yaml.safe_dump(recorded, sort_keys=False))
        results = _Results(root, cfg, run_command, src, _kept_environment(root))
        return _run_stages(results, options, forced, report, on_stage, on_start)
    finally:
        release()


def _recorded(node: Any) -> Any:
    """``node`` with every data section's file paths absolute (``recorded_paths``): the copy
    says which files were read, whatever directory it is re-run from. Keys are computed from
    the pipeline as given, so they do not change."""
    if isinstance(node, dict):
        return {k: _recorded(v) for k, v in recorded_paths(node).items()}
    if isinstance(node, list):
        return [_recorded(v) for v in node]
    return node


def _claim_root(root: Path) -> Callable[[], None]:
    """Create ``root`` and lock it for this run; returns the lock's release."""
    try:
        _refuse_foreign(root)
        root.mkdir(parents=True, exist_ok=True)
        # a second run in the same directory would clear and rewrite the first one's stages
        return hold_exclusive(root / LOCK, f"run directory {root}: another dlopt run holds it ({LOCK} is "
                                           "locked); wait for it to finish, or use another --run-dir")
    except OSError as exc:
        raise ConfigError(f"run directory {root}: cannot create it or write in it ({exc.strerror or exc}); allowed: "
                          "a folder path that can be created and written (--run-dir, runs_dir)") from None


def _refuse_foreign(root: Path) -> None:
    """A folder no dlopt run wrote (no lock file, no results) must be empty: a stage clears
    its folder ``root/<stage>`` and ``pipeline.yaml`` is rewritten, so a ``--run-dir`` that
    holds the user's own ``train/`` or ``bench/`` would lose them."""
    if not root.is_dir() or (root / LOCK).exists() or (root / RESULTS).exists():
        return
    names = sorted(p.name for p in root.iterdir())
    if names:
        raise ConfigError(f"run directory {root} holds files no dlopt run wrote ({', '.join(names[:3])}"
                          f"{', ...' if len(names) > 3 else ''}), which the stages would overwrite or delete; "
                          "allowed: a new or empty folder, or the folder of an earlier dlopt run (--run-dir, "
                          "runs_dir)")


def _run_stages(results: _Results, options: dict[str, Any], forced: set[str], report: bool,
                on_stage: Callable[[StageRecord], None] | None,
                on_start: Callable[[str, str], None] | None) -> PipelineResult:
    cfg, root = results.cfg, results.root
    records: dict[str, StageRecord] = {}
    digests: dict[Path, str] = {}  # a data folder several stages read is walked once per run
    removed = False
    for spec in stage_order(cfg):
        key = stage_key(cfg, spec.name, options[spec.name], records, digests=digests)
        d = root / spec.name
        rec = _cached(spec, key, d, forced)
        if rec is None:
            resume = _resumes(spec, key, d, forced)
            if on_start:
                on_start(spec.name, "resume" if resume else "run")
            results.write(records.values(), running=True)  # the failed stage's old record goes
            removed = removed or (not report and _remove_report(root))
            try:
                rec = _execute(cfg, spec, key, d, options[spec.name], records, resume, results.run_command)
            except Exception:
                if report:
                    _report_after_failure(root)
                raise
            records[spec.name] = rec
            results.write(records.values())
        else:
            records[spec.name] = rec
            if on_start:
                on_start(spec.name, "cached")
        if on_stage:
            on_stage(rec)
    results.write(records.values())
    paths: dict[str, Path] = {}
    if report:
        from dlopt.report import build_report

        paths = build_report(root)
    return PipelineResult(root, list(records.values()), paths, removed)


_REPORT_FILES = ("report.html", "report.md", "report-files")


def _remove_report(root: Path) -> bool:
    """Remove the report of an earlier run, which shows results a stage that runs now
    replaces (``dlopt report`` writes a current one); True when there was one."""
    found = [root / n for n in _REPORT_FILES if (root / n).exists()]
    for path in found:
        remove_path(path)
    if found:
        log.info("removed the report of an earlier run in %s: it no longer matches results.json", root)
    return bool(found)
