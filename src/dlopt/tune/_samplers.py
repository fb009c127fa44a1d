"""Sampler adaptations dlopt needs on top of optuna's."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Mapping, Sequence

from optuna.samplers import GridSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


#: ``keep(point)``: whether a grid point (parameter -> value) is one to visit
GridFilter = Callable[[Mapping[str, Any]], bool]


class AskTellGridSampler(GridSampler):
    """GridSampler for an ask/tell loop, over the grid points ``keep`` accepts.

    optuna's ``after_trial`` calls ``study.stop()`` once the grid is exhausted, which raises
    outside ``study.optimize``. dlopt stops by counting trials under its own lock (the study
    total is capped at the grid size), so the stop request is dropped here.

    optuna's grid is the full product of the axes; with a conditional axis most points differ
    only in a value no trial reads (``momentum`` for ``adam``). ``keep`` drops them after the
    seeded shuffle, so the visiting order stays a function of the seed (every start of the
    study, and every worker, indexes the same list by the stored grid ids).
    """

    def __init__(self, search_space: Mapping[str, Sequence[Any]], seed: int | None = None,
                 keep: GridFilter | None = None) -> None:
        super().__init__(search_space, seed=seed)
        if keep is not None:
            self._all_grids = [g for g in self._all_grids
                               if keep(dict(zip(self._param_names, g)))]
            self._n_min_trials = len(self._all_grids)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None

    @property
    def digest(self) -> str:
        """A fingerprint of the point list in visiting order (what stored grid ids index)."""
        text = json.dumps(self._all_grids, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def grid_size(self) -> int:
        """Number of grid points (the combinations of the axes that ``keep`` accepts)."""
        return len(self._all_grids)
