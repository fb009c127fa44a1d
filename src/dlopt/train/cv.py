"""k-fold cross-validation for small sets: one sub-run per fold, mean and std across folds.

The training and validation splits are pooled and re-split into ``folds`` stratified folds
(plain k-fold for regression, seeded by ``data.seed``); every fold trains a fresh model in
``<run>/fold-<k>/`` and is tested on the same held-out test split. The run's own
``summary.json`` reports each metric's mean, std and per-fold values. Preprocessing stays
the one fitted on the original training split.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dlopt.config import dump_config
from dlopt.data import DataBundle, Split
from dlopt.errors import ConfigError
from dlopt.train import rundir

__all__ = ["cross_validate", "fold_indices", "mean_std"]


def fold_indices(y: np.ndarray, folds: int, *, seed: int, stratify: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(train_idx, val_idx)] * folds`` (scikit-learn StratifiedKFold / KFold, shuffled)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds > len(y):
        raise ConfigError(f"train.cv={folds}: more folds than the {len(y)} training samples")
    if stratify and np.bincount(y).min() >= folds:
        splitter: Any = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "std", "values"}`` (population std; NaN-free values only)."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return {"mean": None, "std": None, "values": list(values)}
    return {"mean": statistics.fmean(vals), "std": statistics.pstdev(vals), "values": vals}


def cross_validate(cfg: Any, *, run_dir: str | Path, folds: int, callbacks: Sequence[Any] = (),
                   overwrite: bool = False, resume: bool = False, model: Any = None, bundle: Any = None) -> Any:
    """Train ``folds`` models; returns the last fold's FitResult with the CV summary."""
    from dlopt.train.api import FitResult, train_run

    if resume:
        raise ConfigError("--resume is not supported with train.cv; rerun with --overwrite")
    d = rundir.prepare_run_dir(run_dir, overwrite=overwrite, resumable=False)
    if bundle is None:
        from dlopt.data import load_data

        bundle = load_data(cfg.data)
    parts = [bundle.train] + ([bundle.val] if bundle.val is not None else [])
    pool = Split(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
    classification = bundle.info.task == "classification"
    splits = fold_indices(pool.y.numpy(), folds, seed=cfg.data.seed, stratify=classification)
    fold_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"cv": None})})
    dump_config(cfg, d / rundir.CONFIG)
    results = []
    for k, (tr, va) in enumerate(splits):
        tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
        fold = DataBundle(info=bundle.info, train=Split(pool.x[tr_t], pool.y[tr_t]),
                          val=Split(pool.x[va_t], pool.y[va_t]), test=bundle.test,
                          preprocessor=bundle.preprocessor)
        fresh = None
        if model is not None:  # every fold starts from the same untrained weights
            import copy

            fresh = copy.deepcopy(model)
        results.append(train_run(fold_cfg, run_dir=d / f"fold-{k + 1}", callbacks=callbacks,
                                 model=fresh, bundle=fold))
    summary = dict(results[-1].summary)
    for part in ("val", "test"):
        keys = sorted({key for r in results for key in r.summary[part]})
        stats = {key: mean_std([r.summary[part].get(key) for r in results]) for key in keys}
        summary[part] = {key: s["mean"] for key, s in stats.items()}
        summary[f"cv_{part}"] = stats
    summary.update(cv=folds, epochs=max(r.summary["epochs"] for r in results),
                   train_seconds=round(sum(r.summary["train_seconds"] for r in results), 3),
                   best_epoch=None, folds=[str(r.run_dir.name) for r in results])
    summary.pop("confusion_matrix", None)
    rundir.write_json(d / rundir.SUMMARY, summary)
    if bundle.preprocessor is not None:
        bundle.preprocessor.save(d)
    return FitResult(model=results[-1].model, run_dir=d, summary=rundir.read_json(d / rundir.SUMMARY),
                     history=results[-1].history)
