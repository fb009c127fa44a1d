"""Early stopping of bad trials.

One objective: each epoch's validation metric goes to the optuna pruner (median, ASHA,
Hyperband) through ``trial.report`` / ``trial.should_prune``.

Several objectives: optuna's pruners are single-objective, so dlopt applies two rules itself.

1. *Constraint already violated*: metrics known from the architecture before training
   (``params``, ``macs``, ``size_bytes``, ``latency_ms``) are checked against the
   constraints before the first epoch; a violation prunes the trial at zero epochs (this
   applies with one objective too).
2. *Pareto-median rule* (:class:`ParetoMedianRule`): after the warm-up epochs, a trial is
   stopped at epoch *e* when its trained metric (the first ``val_`` objective) is worse than
   the median of earlier trials at epoch *e* **and** some earlier trial dominates it on
   everything known so far: better trained metric at epoch *e* and at least as good on
   every static objective (e.g. no more parameters). A trial that is behind but smaller or
   faster than every better trial keeps running: it may end on the Pareto front.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import optuna

from dlopt.tune._metrics import Direction, is_static

if TYPE_CHECKING:
    from dlopt.config import ConstraintSpec

__all__ = ["ParetoMedianRule", "Peer", "PruningPolicy", "TrialContext", "constraint_values"]


@dataclass(frozen=True)
class Peer:
    """What the rule knows of another trial: its per-epoch curve and its static metrics."""

    number: int
    curve: Mapping[int, float]
    static: Mapping[str, float]


@dataclass(frozen=True)
class ParetoMedianRule:
    """Multi-objective early stopping (see the module docstring).

    ``n_startup_trials``: trials that must have reached an epoch before anyone is stopped
    there; ``n_warmup_steps``: epochs every trial runs unconditionally.
    """

    n_startup_trials: int = 4
    n_warmup_steps: int = 1

    def decide(
        self,
        *,
        epoch: int,
        value: float,
        maximize: bool,
        static: Mapping[str, float],
        static_directions: Mapping[str, Direction],
        peers: Sequence[Peer],
    ) -> tuple[bool, str]:
        """``(stop, reason)`` for a trial whose trained metric is ``value`` at ``epoch``."""
        if epoch <= self.n_warmup_steps:
            return False, "warm-up"
        at = [p for p in peers if epoch in p.curve and math.isfinite(p.curve[epoch])]
        if len(at) < self.n_startup_trials:
            return False, f"{len(at)} trials reached epoch {epoch}"

        def better(a: float, b: float) -> bool:
            return a > b if maximize else a < b

        median = statistics.median(p.curve[epoch] for p in at)
        if not better(median, value) and math.isfinite(value):
            return False, "not below the median"
        for p in at:
            if better(p.curve[epoch], value) and _no_worse(p.static, static, static_directions):
                known = ", ".join(f"{m} {p.static[m]:g} vs {static[m]:g}"
                                  for m in static_directions)
                return True, (f"epoch {epoch}: {value:.4g} worse than median {median:.4g} and "
                              f"dominated by trial {p.number}" + (f" ({known})" if known else ""))
        return False, "below the median but not dominated"


def _no_worse(other: Mapping[str, float], mine: Mapping[str, float],
              directions: Mapping[str, Direction]) -> bool:
    for metric, direction in directions.items():
        if metric not in other or metric not in mine:
            return False
        if direction == "minimize" and other[metric] > mine[metric]:
            return False
        if direction == "maximize" and other[metric] < mine[metric]:
            return False
    return True


def constraint_values(constraints: Sequence["ConstraintSpec"], metrics: Mapping[str, float]) -> list[float]:
    """optuna convention: one value per constraint, <= 0 when met (0 while unknown)."""
    out = []
    for c in constraints:
        v = metrics.get(c.metric)
        if v is None or not math.isfinite(v):
            out.append(0.0)
            continue
        over = v - c.max if c.max is not None else -math.inf
        under = c.min - v if c.min is not None else -math.inf
        out.append(float(max(over, under)))
    return out


@dataclass
class PruningPolicy:
    """Study-level settings a trial needs to decide on stopping."""

    objectives: list[tuple[str, Direction]]
    constraints: list["ConstraintSpec"] = field(default_factory=list)
    pareto: ParetoMedianRule | None = None

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    @property
    def watched(self) -> tuple[str, Direction] | None:
        """The per-epoch metric reported for pruning: the first ``val_`` objective."""
        return next(((m, d) for m, d in self.objectives if m.startswith("val_")), None)

    def needed(self) -> set[str]:
        """Every metric the objectives and constraints read."""
        return {m for m, _ in self.objectives} | {c.metric for c in self.constraints}

    def static_directions(self) -> dict[str, Direction]:
        return {m: d for m, d in self.objectives if is_static(m)}


class TrialContext:
    """Handed to an objective with the trial's config: where to write, where to report.

    ``check_static(metrics)`` before training and ``report(epoch, metrics)`` after each epoch
    raise ``optuna.TrialPruned`` when the trial should stop. ``resume_from``: the run directory
    of the failed trial this one retries (same parameters), whose checkpoint it may continue.
    ``last_step``: the step that ends the trial's training (``train.epochs``, times the folds
    with ``train.cv``); set by the study once the trial's config is drawn, moved earlier by
    the objective when max_steps or early stopping ends the last fold sooner.
    """

    def __init__(self, trial: optuna.Trial, *, run_dir: Path, params: Mapping[str, Any],
                 policy: PruningPolicy, resume_from: Path | None = None) -> None:
        self.trial = trial
        self.run_dir = run_dir
        self.resume_from = resume_from
        self.params = dict(params)
        self.policy = policy
        self.epochs = 0
        self.last_step: int | None = None
        self.static: dict[str, float] = {}
        self._curve: dict[int, float] = {}

    @property
    def number(self) -> int:
        return self.trial.number

    def check_static(self, metrics: Mapping[str, float]) -> None:
        """Record architecture metrics; prune at once when one breaks a constraint."""
        self.static = {k: float(v) for k, v in metrics.items()}
        self.trial.set_user_attr("static", self.static)
        for c in self.policy.constraints:
            v = self.static.get(c.metric)
            if v is None:
                continue
            if c.max is not None and v > c.max:
                bound = f"<= {c.max:g}"
            elif c.min is not None and v < c.min:
                bound = f">= {c.min:g}"
            else:
                continue
            raise optuna.TrialPruned(f"{c.metric}={v:g} breaks the constraint {bound} "
                                     f"before training")

    def report(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Send the epoch's watched metric to the pruner; raise TrialPruned to stop. At
        ``last_step`` the pruner is not asked: stopping a fully trained trial saves no
        training and would only hide its result."""
        self.epochs = int(epoch)
        final = self.last_step is not None and self.epochs >= self.last_step
        watched = self.policy.watched
        if watched is None or watched[0] not in metrics:
            return
        metric, direction = watched
        value = float(metrics[metric])
        if not self.policy.multi:
            self.trial.report(value, self.epochs)
            if not final and self.trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: {metric}={value:.4g}")
            return
        self._curve[self.epochs] = value
        self.trial.set_user_attr("curve", {str(k): v for k, v in self._curve.items()})
        if self.policy.pareto is None or final:
            return
        stop, reason = self.policy.pareto.decide(
            epoch=self.epochs, value=value, maximize=direction == "maximize",
            static=self.static, static_directions=self.policy.static_directions(),
            peers=_peers(self.trial.study, self.number),
        )
        if stop:
            raise optuna.TrialPruned(reason)


def _peers(study: optuna.Study, own: int) -> list[Peer]:
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [
        Peer(t.number, {int(k): float(v) for k, v in t.user_attrs.get("curve", {}).items()},
             t.user_attrs.get("static", {}))
        for t in study.get_trials(deepcopy=False, states=done)
        if t.number != own
    ]
