"""k-fold cross-validation for small sets: one sub-run per fold, mean and std across folds.

The training and validation splits are pooled and re-split into ``folds`` stratified folds
(plain k-fold for regression, seeded by ``data.seed``); every fold trains a fresh model in
``<run>/fold-<k>/`` and is tested on the same held-out test split. The run's own
``summary.json`` reports each metric's mean, std and per-fold values (and, with balanced
class weights, each fold's weights as ``cv_class_weights``); counts and times are summed or
listed per fold (``cv_n_train``, ``cv_n_val``, ``cv_stop_reason``), never the last fold's taken
for the run's. Each fold fits the
configured preprocessing (zscore, PCA, LDA, imputation...) on its own training rows only, so
no fold is scored on rows its preprocessing saw; a ``bundle`` passed in (the Python API's
in-memory data) keeps its own preprocessing.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from dlopt.config import IN_MEMORY_DATA, dump_config
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


_Folds = tuple[np.ndarray, bool, Callable[[np.ndarray, np.ndarray], DataBundle]]


def _raw_folds(data_cfg: Any) -> _Folds:
    """The pooled labels, whether they are classes, and ``make(train_idx, val_idx)``: a
    DataBundle whose preprocessing is fitted on that fold's training rows."""
    from dlopt.data import preprocess_splits, splits_of

    rs = splits_of(data_cfg)
    parts = [rs.train] + ([rs.val] if rs.val is not None else [])
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def make(tr: np.ndarray, va: np.ndarray) -> DataBundle:
        return preprocess_splits(rs, train=(x[tr], y[tr]), val=(x[va], y[va]))

    classification = rs.raw.task == "classification"
    return (y.astype(np.int64) if classification else y), classification, make


def _bundle_folds(bundle: DataBundle) -> _Folds:
    """As :func:`_raw_folds` for an already preprocessed bundle (its preprocessing is kept)."""
    parts = [bundle.train] + ([bundle.val] if bundle.val is not None else [])
    pool = Split(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))

    def make(tr: np.ndarray, va: np.ndarray) -> DataBundle:
        return DataBundle(info=bundle.info, train=pool.subset(tr), val=pool.subset(va), test=bundle.test,
                          preprocessor=bundle.preprocessor)

    return pool.y.numpy(), bundle.info.task == "classification", make


def cross_validate(cfg: Any, *, run_dir: str | Path, folds: int, callbacks: Sequence[Any] = (),
                   overwrite: bool = False, resume: bool = False, model: Any = None, bundle: Any = None) -> Any:
    """Train ``folds`` models; returns the last fold's FitResult with the CV summary."""
    from dlopt.train.api import undo_refused_start

    if resume:
        raise ConfigError("--resume is not supported with train.cv; rerun with --overwrite")
    created = not Path(run_dir).exists()
    fresh = overwrite or created or not any(Path(run_dir).iterdir())
    d = rundir.prepare_run_dir(run_dir, overwrite=overwrite, resumable=False)
    with undo_refused_start(d, fresh=fresh, created=created):
        return _cross_validate(cfg, d, folds, callbacks=callbacks, model=model, bundle=bundle)


def _cv_summary(results: Sequence[Any], folds: int, *, fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    """The run's summary: metrics as mean (``cv_val``/``cv_test``: mean, std, values), sums of
    what adds up, each key a single run's summary has with that run's type (a fold's row
    counts, one stop reason) and its per-fold list as ``cv_<key>`` (in ``folds`` order), and
    the last fold's values only where every fold shares them (model, sizes, test split)."""
    summary = dict(results[-1].summary)
    for part in ("val", "test"):
        keys = sorted({key for r in results for key in r.summary[part]})
        stats = {key: mean_std([r.summary[part].get(key) for r in results]) for key in keys}
        summary[part] = {key: s["mean"] for key, s in stats.items()}
        summary[f"cv_{part}"] = stats
    each = {f"cv_{key}": [r.summary[key] for r in results] for key in ("n_train", "n_val", "stop_reason")}
    total = {key: sum(r.summary[key] for r in results) for key in ("steps", "nonfinite_skipped")}
    first = results[0].summary  # a fold's row counts (folds differ by one row at most): fold-1's
    summary.update(each, **total, cv=folds, epochs=max(r.summary["epochs"] for r in results),
                   n_train=first["n_train"], n_val=first["n_val"],
                   stop_reason=_one_reason(each["cv_stop_reason"]),
                   train_seconds=round(sum(r.summary["train_seconds"] for r in results), 3),
                   test_seconds=round(sum(r.summary["test_seconds"] for r in results), 3),
                   best_epoch=None, folds=[str(r.run_dir.name) for r in results],
                   data_info={**summary["data_info"], "n_train": first["n_train"] + first["n_val"]})
    summary.pop("confusion_matrix", None)
    summary.pop("data_fingerprint", None)
    if fingerprint is not None:  # the data the run was given, not the last fold's split of it
        summary["data_fingerprint"] = fingerprint
    if "class_weights" in summary:  # balanced weights come from each fold's own training labels
        del summary["class_weights"]
        summary["cv_class_weights"] = {r.run_dir.name: r.summary["class_weights"] for r in results}
    return summary


def _one_reason(reasons: list[str]) -> str:
    """The folds' stop reason: theirs when they agree, else their common kind (``early
    stopping``: each fold's own figures follow the colon), else ``mixed``."""
    if len(set(reasons)) == 1:
        return reasons[0]
    kinds = {r.partition(":")[0] for r in reasons}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _cross_validate(cfg: Any, d: Path, folds: int, *, callbacks: Sequence[Any], model: Any,
                    bundle: Any) -> Any:
    from dlopt.train.api import FitResult, data_fingerprint, train_run

    pool_y, classification, make_fold = _raw_folds(cfg.data) if bundle is None else _bundle_folds(bundle)
    splits = fold_indices(pool_y, folds, seed=cfg.data.seed, stratify=classification)
    fold_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"cv": None})})
    dump_config(cfg, d / rundir.CONFIG)
    results = []
    for k, (tr, va) in enumerate(splits):
        fold = make_fold(tr, va)
        fresh = None
        if model is not None:  # every fold starts from the same untrained weights
            import copy

            fresh = copy.deepcopy(model)
        results.append(train_run(fold_cfg, run_dir=d / f"fold-{k + 1}", callbacks=callbacks,
                                 model=fresh, bundle=fold))
    in_memory = bundle is not None and cfg.data.name == IN_MEMORY_DATA
    summary = _cv_summary(results, folds, fingerprint=data_fingerprint(bundle) if in_memory else None)
    rundir.write_json(d / rundir.SUMMARY, summary)
    if fold.preprocessor is not None:  # the returned model is the last fold's: its preprocessing
        fold.preprocessor.save(d)
    return FitResult(model=results[-1].model, run_dir=d, summary=rundir.read_json(d / rundir.SUMMARY),
                     history=results[-1].history)
