"""Learning-rate schedules by name, as pure multiplier functions, plus the stepper that applies them.

A schedule is a pure function of training progress returning a multiplier of each parameter
group's base learning rate, so a schedule can be plotted, tested and resumed exactly (its
whole state is the step count, plus the plateau counters). Each entry says how it is stepped:

- ``interval="epoch"`` (step, multistep, exponential, reduce-on-plateau): the multiplier
  changes only at epoch boundaries, from the number of completed epochs (staircase), exactly
  like torch's ``StepLR`` stepped once per epoch;
- ``interval="step"`` (polynomial, cosine, one-cycle): the multiplier changes every
  optimizer step, from the fraction of the run done;
- ``constant`` never changes.

Linear warm-up goes in front of any schedule: for ``warmup_epochs`` (may be fractional) the
multiplier ramps linearly from ``1/warmup_steps`` to the schedule's value, stepped per batch;
the schedule's own clock starts after warm-up. One-cycle follows ``torch.optim.lr_scheduler.
OneCycleLR`` (cosine annealing, ``div_factor``, ``final_div_factor``, ``pct_start``) without
cycling momentum. Importing this module does not import torch.
"""

from __future__ import annotations

import bisect
import logging
import math
from typing import Any, Callable

from dlopt.errors import ConfigError
from dlopt.registry import Registry

__all__ = ["SCHEDULES", "LRSchedule", "Progress", "create_schedule", "run_epochs"]

log = logging.getLogger(__name__)


class Progress:
    """Where training is, in the schedule's own clock (after warm-up)."""

    __slots__ = ("step", "total_steps", "epoch")

    def __init__(self, step: int, total_steps: int, epoch: int) -> None:
        self.step, self.total_steps, self.epoch = step, total_steps, epoch

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / max(1, self.total_steps))


#: name -> factory(**options) -> multiplier(Progress) -> float.
#: Info: ``interval`` ("step" | "epoch" | "none"), ``needs_metric`` (plateau).
SCHEDULES: Registry[Callable[[Progress], float]] = Registry("schedule")


@SCHEDULES.register("constant", interval="none", needs_metric=False)
def constant(**_: Any) -> Callable[[Progress], float]:
    """The base learning rate throughout."""
    return lambda p: 1.0


@SCHEDULES.register("step", interval="epoch", needs_metric=False)
def step(*, step_size: int = 1, gamma: float = 0.1, **_: Any) -> Callable[[Progress], float]:
    """Multiply by ``gamma`` every ``step_size`` epochs (torch StepLR)."""
    return lambda p: gamma ** (p.epoch // step_size)


@SCHEDULES.register("multistep", interval="epoch", needs_metric=False)
def multistep(*, milestones: list[int] | None = None, gamma: float = 0.1,
              **_: Any) -> Callable[[Progress], float]:
    """Multiply by ``gamma`` at each epoch in ``milestones`` (torch MultiStepLR)."""
    marks = sorted(milestones or [])
    return lambda p: gamma ** bisect.bisect_right(marks, p.epoch)


@SCHEDULES.register("exponential", interval="epoch", needs_metric=False)
def exponential(*, gamma: float = 0.1, **_: Any) -> Callable[[Progress], float]:
    """Multiply by ``gamma`` every epoch (torch ExponentialLR)."""
    return lambda p: gamma ** p.epoch


@SCHEDULES.register("polynomial", interval="step", needs_metric=False)
def polynomial(*, power: float = 1.0, min_factor: float = 0.0, **_: Any) -> Callable[[Progress], float]:
    """Decay as ``(1 - t/T) ** power`` to ``min_factor`` (torch PolynomialLR per step)."""
    return lambda p: min_factor + (1.0 - min_factor) * (1.0 - p.fraction) ** power


@SCHEDULES.register("cosine", interval="step", needs_metric=False)
def cosine(*, min_factor: float = 0.0, **_: Any) -> Callable[[Progress], float]:
    """Half a cosine from 1 to ``min_factor`` over the run (torch CosineAnnealingLR)."""
    return lambda p: min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * p.fraction))


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


@SCHEDULES.register("one-cycle", interval="step", needs_metric=False)
def one_cycle(*, pct_start: float = 0.25, div_factor: float = 25.0, final_div_factor: float = 1e4,
              **_: Any) -> Callable[[Progress], float]:
    """Rise from ``1/div_factor`` to 1 over ``pct_start`` of the run, then anneal to
    ``1/(div_factor*final_div_factor)`` (torch OneCycleLR, cosine, no momentum cycling)."""
    start, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)

    def f(p: Progress) -> float:
        # torch counts phase ends in steps: (pct_start * T) - 1 and T - 1
        last = max(1, p.total_steps - 1)
        up = max(1.0, pct_start * p.total_steps - 1)
        t = min(p.step, last)
        if t <= up:
            return _cos_anneal(start, 1.0, t / up)
        return _cos_anneal(1.0, end, (t - up) / max(1.0, last - up))

    return f


@SCHEDULES.register("plateau", interval="epoch", needs_metric=True)
def plateau(*, patience: int = 2, factor: float = 0.1, **_: Any) -> Callable[[Progress], float]:
    """Reduce-on-plateau: the multiplier is ``factor ** reductions``; reductions are decided
    by :class:`LRSchedule` from the monitored metric (torch ReduceLROnPlateau rules), so
    ``patience`` and ``factor`` are declared here (the options plateau takes) and used there."""
    return lambda p: 1.0


def plateau_decision(value: float, *, best: float | None, bad_epochs: int, patience: int,
                     mode: str, threshold: float = 1e-4) -> tuple[float, int, bool]:
    """Pure plateau rule: ``(best, bad_epochs, reduce)`` after seeing ``value`` (relative
    threshold, as torch's default ``threshold_mode="rel"``)."""
    improved = best is None or (
        value < best * (1 - threshold) if mode == "min" else value > best * (1 + threshold)
    )
    if improved:
        return value, 0, False
    bad_epochs += 1
    if bad_epochs > patience:
        return best, 0, True  # type: ignore[return-value]
    return best, bad_epochs, False  # type: ignore[return-value]


class LRSchedule:
    """Applies a multiplier schedule (plus linear warm-up) to an optimizer's groups.

    It is a loop handler: :meth:`step` runs after every optimizer step and :meth:`epoch_end`
    after each evaluation (with ``monitor``, default ``val_loss``, falling back to the train
    loss without validation); both only write ``group["lr"]`` (no tensors, no sync).
    ``state_dict`` is plain data, so resume is exact.
    """

    order = 50  # before Checkpointing saves the epoch
    state_key = "schedule"
    monitor = "val_loss"

    def __init__(self, optimizer: Any, fn: Callable[[Progress], float], *, interval: str,
                 steps_per_epoch: int, total_steps: int, warmup_steps: int = 0,
                 plateau: dict[str, Any] | None = None) -> None:
        self.optimizer = optimizer
        self.fn = fn
        self.interval = interval
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.warmup_steps = warmup_steps
        self.total_steps = max(1, total_steps - warmup_steps)
        self.plateau = plateau  # {"patience", "factor", "mode"} or None
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.steps = 0
        self.epochs = 0
        self.reductions = 0
        self.best: float | None = None
        self.bad_epochs = 0
        self._apply()

    def factor(self) -> float:
        """The current multiplier of the base learning rates."""
        if self.steps < self.warmup_steps:
            ramp = (self.steps + 1) / self.warmup_steps
            return ramp * self.fn(Progress(0, self.total_steps, 0))
        t = self.steps - self.warmup_steps
        epoch = t // self.steps_per_epoch if self.interval == "epoch" else self.epochs
        mult = self.fn(Progress(t, self.total_steps, epoch))
        if self.plateau is not None:
            mult *= self.plateau["factor"] ** self.reductions
        return mult

    def _apply(self) -> None:
        f = self.factor()
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f

    def step(self) -> None:
        """After one optimizer step."""
        self.steps += 1
        if self.interval != "none" or self.steps <= self.warmup_steps:
            self._apply()

    def epoch_end(self, metric: float | None = None) -> None:
        """After one epoch's evaluation; ``metric`` drives reduce-on-plateau."""
        self.epochs += 1
        if self.plateau is not None and metric is not None and self.steps >= self.warmup_steps:
            self.best, self.bad_epochs, reduce = plateau_decision(
                metric, best=self.best, bad_epochs=self.bad_epochs,
                patience=self.plateau["patience"], mode=self.plateau["mode"])
            self.reductions += int(reduce)
        self._apply()

    def on_after_optimizer_step(self, state: Any) -> None:
        self.step()

    def on_epoch_end(self, state: Any) -> None:
        self.epoch_end(state.metrics.get(self.monitor, state.train_loss))

    @property
    def last_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "epochs": self.epochs, "reductions": self.reductions,
                "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.epochs = int(state["steps"]), int(state["epochs"])
        self.reductions, self.bad_epochs = int(state["reductions"]), int(state["bad_epochs"])
        self.best = state["best"]
        self._apply()


def create_schedule(
    name: str,
    optimizer: Any,
    *,
    steps_per_epoch: int,
    epochs: int,
    max_steps: int | None = None,
    warmup_epochs: float = 0.0,
    step_size: int = 1,
    gamma: float = 0.1,
    milestones: list[int] | None = None,
    power: float = 1.0,
    min_lr: float = 0.0,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    patience: int = 2,
    factor: float = 0.1,
    mode: str = "min",
    base_lr: float = 1.0,
) -> LRSchedule:
    """Build schedule ``name`` for a run of ``epochs`` x ``steps_per_epoch`` optimizer steps
    (``max_steps`` caps it). ``min_lr`` is absolute; it becomes a factor of ``base_lr``."""
    entry = SCHEDULES.get(name)
    if min_lr > base_lr:  # it was clipped to the peak lr: a decaying schedule silently stayed constant
        raise ConfigError(f"train.schedule.min_lr={min_lr:g} is above the peak lr {base_lr:g} (train.optim.lr); "
                          f"allowed: min_lr <= lr")
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    fn = entry.factory(step_size=step_size, gamma=gamma, milestones=milestones, power=power,
                       min_factor=min(1.0, min_lr / base_lr), pct_start=pct_start,
                       div_factor=div_factor, final_div_factor=final_div_factor,
                       patience=patience, factor=factor)
    plateau_cfg = {"patience": patience, "factor": factor, "mode": mode} if entry.info["needs_metric"] else None
    warmup = round(warmup_epochs * steps_per_epoch)
    capped = max_steps is not None and max_steps < steps_per_epoch * epochs
    _check_warmup(warmup, total, what=f"train.max_steps={max_steps}" if capped else f"train.epochs={epochs}",
                  warmup_epochs=warmup_epochs)
    _warn_idle(name, milestones or [], patience, steps_per_epoch=steps_per_epoch, total=total, warmup=warmup)
    return LRSchedule(optimizer, fn, interval=entry.info["interval"], steps_per_epoch=steps_per_epoch,
                      total_steps=total, warmup_steps=warmup, plateau=plateau_cfg)


def _check_warmup(warmup: int, total: int, *, what: str, warmup_epochs: float) -> None:
    """A warm-up as long as the run never hands over to the schedule, and a longer one never
    reaches the base lr: refused in steps (``what`` names the budget that ends the run)."""
    if warmup and warmup >= total:
        raise ConfigError(f"train.schedule.warmup_epochs={warmup_epochs:g}: warm-up {warmup} steps, run {total} "
                          f"steps ({what}); allowed: a warm-up shorter than the run")


def run_epochs(epochs: int, max_steps: int | None, steps_per_epoch: int) -> int:
    """Epochs a run evaluates: ``epochs``, or fewer when ``max_steps`` (optimizer steps) ends it
    first (an epoch it cuts is closed early, so it counts)."""
    if max_steps is None:
        return epochs
    return min(epochs, math.ceil(max_steps / max(1, steps_per_epoch)))


def _warn_idle(name: str, milestones: list[int], patience: int, *, steps_per_epoch: int, total: int,
               warmup: int) -> None:
    """A schedule the run is too short for never changes the lr. Said, not refused: a quick run
    of a longer recipe (``--set train.epochs=1``) is a fair thing to ask for."""
    spe = max(1, steps_per_epoch)
    after = " after warm-up" if warmup else ""
    if name == "multistep":
        epochs = (total - 1 - warmup) // spe + 1  # epochs of the schedule's clock that take a step
        if all(m >= epochs for m in milestones):
            log.warning("train.schedule.milestones=%s with a run of %d epoch(s)%s: a milestone m lowers the lr "
                        "from epoch m + 1 on, so only milestones below %d act: it can never trigger",
                        sorted(milestones), epochs, after, epochs)
    elif name == "plateau":
        ends = (min(k * spe, total) for k in range(1, math.ceil(total / spe) + 1))  # steps at each epoch's end
        epochs = sum(end >= warmup for end in ends)  # the epochs whose metric the plateau rule sees
        if epochs < patience + 2:
            log.warning("train.schedule.patience=%d with a run of %d epoch(s)%s: plateau lowers the lr once %d "
                        "epochs in a row miss the best, which the first epoch sets, so it needs %d epochs: "
                        "it can never trigger", patience, epochs, after, patience + 1, patience + 2)
