"""What a study leaves in ``runs/<study>/``: ``best_params.json``, ``best_config.yaml``,
``trials.csv``, ``plots/*.png``; and the disk policy (weights kept for the best k trials).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import re
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from dlopt._files import remove_path
from dlopt.tune._metrics import Direction

if TYPE_CHECKING:
    from dlopt.config import RunConfig

log = logging.getLogger(__name__)

__all__ = ["ranked_trials", "measured_values", "write_tables", "write_plots",
           "keep_best_artifacts", "trial_dir", "LIGHT_FILES"]

#: files every trial keeps; everything else (weights, checkpoints) only for the best k
LIGHT_FILES = frozenset({"summary.json", "metrics.jsonl", "config.yaml"})


def trial_dir(study_dir: Path, number: int) -> Path:
    """Run directory of trial ``number``."""
    return study_dir / "trials" / f"{number:04d}"


# trials whose constraint values mean something (a failed one may never have measured them)
_JUDGED = (TrialState.COMPLETE, TrialState.PRUNED)


def _feasible(t: FrozenTrial) -> bool:
    return all(c <= 0 for c in t.user_attrs.get("constraints", []))


def _dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[Direction]) -> bool:
    no_worse = all((x >= y) if d == "maximize" else (x <= y) for x, y, d in zip(a, b, directions))
    return no_worse and any(x != y for x, y in zip(a, b))


def ranked_trials(study: optuna.Study, directions: Sequence[Direction]) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """``(ranked, front)``: COMPLETE trials best first, feasible ones before infeasible; the
    front is the feasible Pareto front (the single best trial for one objective)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values is not None and all(math.isfinite(v) for v in t.values)]
    sign = [-1.0 if d == "maximize" else 1.0 for d in directions]

    def key(t: FrozenTrial) -> tuple:
        return (not _feasible(t), *[s * v for s, v in zip(sign, t.values)], t.number)

    feasible = [t for t in done if _feasible(t)]
    front = [t for t in feasible
             if not any(_dominates(o.values, t.values, directions) for o in feasible)]
    front.sort(key=key)
    rest = sorted((t for t in done if t not in front), key=key)
    return front + rest, front[:1] if len(directions) == 1 else front


def measured_values(t: FrozenTrial, metrics: Sequence[str]) -> list[float | None]:
    """The trial's objective values (None where unknown). optuna keeps none for a pruned trial
    of several objectives (and for one pruned before its first epoch): then what was measured
    before it stopped, the watched metric's last per-epoch value (what the pruner saw), the
    architecture metrics and the epochs trained."""
    if t.values:
        return list(t.values)
    if t.state != TrialState.PRUNED:
        return [None] * len(metrics)
    a = t.user_attrs
    known = {**a.get("static", {}), "epochs": a.get("epochs")}
    curve = a.get("curve") or {}
    watched = next((m for m in metrics if m.startswith("val_")), None)
    if curve and watched is not None:
        known[watched] = curve[max(curve, key=int)]
    return [known.get(m) for m in metrics]


def _row(t: FrozenTrial, metrics: Sequence[str]) -> dict[str, Any]:
    return {
        "trial": t.number,
        "values": dict(zip(metrics, t.values)) if t.values else {},
        "params": t.params,
        "epochs": t.user_attrs.get("epochs"),
        "feasible": _feasible(t),
    }


def write_tables(study: optuna.Study, study_dir: Path, base: "RunConfig",
                 metrics: Sequence[str], directions: Sequence[Direction]) -> list[Path]:
    """Write ``best_params.json``, ``best_config.yaml`` and ``trials.csv`` (atomically)."""
    from dlopt.config import dump_config
    from dlopt.tune._space import SearchSpace

    trials = study.get_trials(deepcopy=False)
    ranked, front = ranked_trials(study, directions)
    written = [_atomic(study_dir / "trials.csv", _csv(trials, metrics))]
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    # where this study has no best, files of an earlier one in this folder would pass for its
    if not front:
        (study_dir / "best_config.yaml").unlink(missing_ok=True)
    if not ranked:
        (study_dir / "best_params.json").unlink(missing_ok=True)
        return written
    best = ranked[0]
    doc = {"study": study.study_name, **_row(best, metrics),
           "counts": {k: v for k, v in counts.items() if v}}
    if len(metrics) > 1:
        doc["pareto"] = [_row(t, metrics) for t in front]
    written.append(_atomic(study_dir / "best_params.json", json.dumps(doc, indent=2) + "\n"))
    if front:  # an infeasible trial is never the config to retrain
        best_cfg = SearchSpace.apply(_trial_config(study_dir, best.number, base),
                                     {**best.params, "name": f"{study.study_name}-best",
                                      # trials train without a progress bar; a retrain may not
                                      "train.progress": base.train.progress})
        written.append(_atomic(study_dir / "best_config.yaml", dump_config(best_cfg)))
    return written


def _trial_config(study_dir: Path, number: int, base: "RunConfig") -> "RunConfig":
    """The config trial ``number`` trained with: a study resumed with an edited config (other
    epochs, data) must not hand back a best config the best trial never ran. Custom
    objectives write no ``config.yaml``: then the current ``base``."""
    from dlopt.config import load_config
    from dlopt.errors import DloptError

    path = trial_dir(study_dir, number) / "config.yaml"
    if not path.is_file():
        return base
    try:
        return load_config(path)
    except (DloptError, OSError, ValueError) as exc:  # half-written, or an older schema
        log.warning("trial %d: unreadable %s (%s); best_config.yaml uses the current config",
                    number, path, exc)
        return base


def _csv(trials: Sequence[FrozenTrial], metrics: Sequence[str]) -> str:
    params = sorted({p for t in trials for p in t.params})
    # a study with constraints gets a last column, so unconstrained tables keep their shape
    constrained = any(t.user_attrs.get("constraints") for t in trials)
    head = ["number", "state", *metrics, *params, "epochs", "seconds", "retry_of", "note",
            "datetime_start", "datetime_complete", *(["feasible"] if constrained else [])]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(head)
    for t in trials:
        a = t.user_attrs
        w.writerow([
            t.number, t.state.name, *measured_values(t, metrics),
            *[t.params.get(p) for p in params],
            a.get("epochs"), a.get("seconds"), a.get("retry_of"), a.get("error") or a.get("note"),
            t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
            t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None,
            *([_feasible(t) if t.state in _JUDGED else None] if constrained else []),
        ])
    return buf.getvalue()


def _atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{_unique()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # several workers may write: readers never see half a file
    return path


def _unique() -> str:
    return f"{os.getpid()}-{threading.get_ident()}"


def keep_best_artifacts(study: optuna.Study, study_dir: Path, directions: Sequence[Direction],
                        k: int) -> None:
    """Delete weights and checkpoints of every finished trial outside the best ``k``, except
    a failed trial's while its retry (queued or starting) may still continue its checkpoint."""
    ranked, _ = ranked_trials(study, directions)
    keep = {t.number for t in ranked[:k]}
    trials = study.get_trials(deepcopy=False)
    keep |= {t.user_attrs.get("retry_of") for t in trials
             if t.state in (TrialState.WAITING, TrialState.RUNNING)}
    for t in trials:
        if t.state.is_finished() and t.number not in keep:
            _keep_light_files(trial_dir(study_dir, t.number))


def _keep_light_files(d: Path) -> None:
    """Delete all but the light files of run directory ``d`` and of its cross-validation
    folds (``fold-K/``: the trial's summary lists them; their curves are what was trained)."""
    if not d.is_dir():
        return
    for item in d.iterdir():
        if item.name in LIGHT_FILES:
            continue
        if item.is_dir() and re.fullmatch(r"fold-\d+", item.name):
            _keep_light_files(item)
        else:
            remove_path(item, ignore_errors=True)


def write_plots(study: optuna.Study, study_dir: Path, metrics: Sequence[str]) -> list[Path]:
    """Optimization history, parameter importances, parallel coordinates, Pareto front
    (several objectives) and intermediate values; a plot the study cannot support yet (too
    few trials) is skipped with a log line. Without a COMPLETE trial only the pruned trials'
    curves (intermediate values, when any) are drawn: optuna would draw empty axes and warn."""
    from optuna.visualization import matplotlib as ovm

    out_dir = study_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    first: dict[str, Any] = {}
    if len(metrics) > 1:
        first = {"target": lambda t: t.values[0], "target_name": metrics[0]}
    plots: dict[str, Callable[[], Any]] = {
        "optimization_history": lambda: ovm.plot_optimization_history(study, **first),
        "param_importances": lambda: ovm.plot_param_importances(study, **first),
        "parallel_coordinate": lambda: ovm.plot_parallel_coordinate(study, **first),
    }
    if len(metrics) > 1:
        plots["pareto_front"] = lambda: ovm.plot_pareto_front(study, target_names=list(metrics))
    trials = study.get_trials(deepcopy=False)
    if not any(t.state == TrialState.COMPLETE for t in trials):
        log.info("no COMPLETE trial: plots of results skipped")
        plots.clear()
    if len(metrics) == 1 and any(t.intermediate_values for t in trials):
        plots["intermediate_values"] = lambda: ovm.plot_intermediate_values(study)
    written = []
    for name, make in plots.items():
        path = _save_plot(make, out_dir / f"{name}.png")
        if path is not None:
            written.append(path)
    return written


def _save_plot(make: Callable[[], Any], path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    try:
        with warnings.catch_warnings(), _quiet_optuna_plots():
            warnings.simplefilter("ignore")  # optuna marks these functions experimental
            ax = make()
    except Exception as exc:  # optuna raises several types for "not enough trials"
        log.info("skipped %s: %s", path.name, exc)
        plt.close("all")
        return None
    fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.{_unique()}.tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    plt.close(fig)
    return path


@contextlib.contextmanager
def _quiet_optuna_plots() -> Iterator[None]:
    """optuna's plot functions warn about the study ("no complete trials", "set up the
    pruning feature") on their own lines; dlopt tune's summary says why there is no best."""
    logger = logging.getLogger("optuna.visualization")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
