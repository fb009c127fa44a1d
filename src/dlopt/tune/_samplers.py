"""Sampler adaptations dlopt needs on top of optuna's."""

from __future__ import annotations

from typing import Any, Sequence

from optuna.samplers import GridSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


class AskTellGridSampler(GridSampler):
    """GridSampler for an ask/tell loop.

    optuna's ``after_trial`` calls ``study.stop()`` once the grid is exhausted, which raises
    outside ``study.optimize``. dlopt stops by counting trials under its own lock (the study
    total is capped at the grid size), so the stop request is dropped here.
    """

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None

    @property
    def grid_size(self) -> int:
        """Number of grid points (every combination of the axes)."""
        return len(self._all_grids)


def grid_size(search_space: dict[str, list[Any]]) -> int:
    """Number of combinations of a grid search space."""
    n = 1
    for values in search_space.values():
        n *= len(values)
    return n
