"""How many training epochs each search method spends before a trial reaches the target.

Grid search (no pruning) vs random search (no pruning) vs TPE + ASHA on one search space:
LeNet-5 on an MNIST subset, 3 axes (learning rate, batch size, weight decay) over the same
ranges for every method; the grid takes 3 values per axis (both ends and the middle of each
range, 27 points) and its visiting order is shuffled per seed. Every method gets the same
number of trials (the grid size).

Metric: epochs spent until a trial first reaches the target validation accuracy, counted
over the trials in the order they ran (all epochs of earlier trials, pruned ones included,
plus the epochs the hitting trial needed). The target is 99 % of the best validation
accuracy any method found in that seed. A method that never reaches it is charged all its
epochs (``reached: false`` in the per-seed rows). Medians over seeds.

    python bench/hpo_efficiency.py                  # 5 seeds (~2 min per seed on one thread)
    python bench/hpo_efficiency.py --seeds 1        # reduced run
    python bench/hpo_efficiency.py --seeds 2 --first-seed 3 > b.json  # a slice of the seeds
    python bench/hpo_efficiency.py --methods tpe_asha > t.json  # a slice of the methods
    python bench/hpo_efficiency.py --merge a.json b.json      # one result from the slices

Output: one JSON object with ``grid_epochs``, ``random_epochs``, ``tpe_asha_epochs``
(medians), ``ratio_grid_over_tpe_asha``, the per-seed rows, settings, environment and the raw
per-trial validation curves (``runs``, what ``--merge`` combines).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

METHODS = {
    "grid": {"sampler": {"name": "grid"}, "pruner": {"name": "none"}},
    "random": {"sampler": {"name": "random"}, "pruner": {"name": "none"}},
    "tpe_asha": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 5}},
                 "pruner": {"name": "asha", "options": {"min_resource": 1,
                                                        "reduction_factor": 3}}},
}

SPACE = {
    "train.optim.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True, "grid": 3},
    "train.batch_size": {"type": "int", "low": 32, "high": 512, "log": True,
                         "grid": [32, 128, 512]},
    "train.optim.weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True,
                                 "grid": 3},
}


def base_config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": "hpo-bench",
        "data": {"name": args.dataset, "subset": args.subset, "test_subset": 500,
                 "val_fraction": 0.2},
        "model": {"name": "lenet5"},
        "train": {"epochs": args.epochs, "batch_size": 128, "progress": False,
                  "optim": {"name": "adam", "lr": 1e-3}, "schedule": {"name": "constant"}},
    }


def run_method(method: str, seed: int, args: argparse.Namespace, root: Path) -> list[list[float]]:
    """Per trial (in run order): its validation accuracy after each epoch it trained."""
    from dlopt.config import TuneConfig, parse_config
    from dlopt.tune import tune

    data = base_config(args)
    settings = METHODS[method]
    data["search"] = {
        "space": SPACE, "trials": args.trials, "keep_checkpoints": 0,
        "sampler": {**settings["sampler"], "seed": seed}, "pruner": settings["pruner"],
        "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
    }
    data["train"]["seed"] = seed
    cfg = parse_config(data, TuneConfig)
    study_dir = root / f"{method}-{seed}"
    curves: list[list[float]] = []

    def record(rec: Any) -> None:
        path = study_dir / "trials" / f"{rec.number:04d}" / "metrics.jsonl"
        rows = path.read_text() if path.exists() else ""  # a trial failed before its 1st epoch
        curve = [json.loads(r).get("val_accuracy") for r in rows.splitlines() if r.strip()]
        curves.append([float(v) for v in curve if v is not None])

    tune(cfg, study=f"{method}-{seed}", study_dir=study_dir, storage="memory",
         on_trial=record, plots=False)
    return curves


def epochs_to_target(curves: list[list[float]], target: float) -> tuple[int, bool]:
    """Epochs spent until some trial's validation accuracy first reaches ``target``."""
    spent = 0
    for curve in curves:
        for acc in curve:
            spent += 1
            if acc >= target:
                return spent, True
    return spent, False


def seed_row(seed: int, curves: dict[str, list[list[float]]]) -> dict[str, Any]:
    """One seed's figures: the target (99 % of the best any method found), then per method
    the epochs spent until it reached the target."""
    best = max(max(c) for cs in curves.values() for c in cs if c)
    target = 0.99 * best
    row: dict[str, Any] = {"seed": seed, "best_val_accuracy": best, "target": target}
    for m in METHODS:
        spent, reached = epochs_to_target(curves[m], target)
        row[m] = {"epochs": spent, "reached": reached, "trials": len(curves[m]),
                  "total_epochs": sum(len(c) for c in curves[m]),
                  "best": max(max(c) for c in curves[m] if c)}
    return row


def summarize(runs: list[dict[str, Any]], settings: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """The output contract: medians over the seeds that ran every method, the per-seed rows,
    and the raw curves (``runs``) so that runs over slices can be merged."""
    by_seed: dict[int, dict[str, list[list[float]]]] = {}
    for r in runs:
        by_seed.setdefault(r["seed"], {})[r["method"]] = r["curves"]
    rows = [seed_row(seed, c) for seed, c in sorted(by_seed.items()) if set(c) == set(METHODS)]
    out: dict[str, Any] = {}
    if rows:
        med = {m: statistics.median(r[m]["epochs"] for r in rows) for m in METHODS}
        out = {"grid_epochs": med["grid"], "random_epochs": med["random"],
               "tpe_asha_epochs": med["tpe_asha"],
               "ratio_grid_over_tpe_asha": round(med["grid"] / med["tpe_asha"], 3)}
    return {**out, "per_seed": rows,
            "incomplete_seeds": sorted(s for s, c in by_seed.items() if set(c) != set(METHODS)),
            "settings": {**settings, "seeds": [r["seed"] for r in rows]}, "env": env,
            "runs": runs}


def bad_input(message: str) -> NoReturn:
    """One line on stderr, as argparse words it (``SCRIPT: error: ...``), then exit 2."""
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    sys.exit(2)


def check_dataset(name: str) -> None:
    """The bench's data set must be readable before any trial: one line, exit 2 otherwise
    (an unknown name, or fashion-mnist without ``$DLOPT_DATA_DIR``)."""
    from dlopt.data import read_raw
    from dlopt.errors import ConfigError, DataError

    try:
        read_raw(name)
    except (ConfigError, DataError) as exc:
        bad_input(f"--dataset {name!r}: {exc}")


def _read_slice(path: str) -> dict[str, Any]:
    """One earlier output of this script (the slice ``--merge`` combines)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        bad_input(f"--merge: cannot read {path}: {exc}")
    if not isinstance(doc, dict) or not {"settings", "runs", "env"} <= doc.keys():
        bad_input(f"--merge: {path} is not an output of this script (no settings/runs/env)")
    return doc


def merge(paths: list[str]) -> dict[str, Any]:
    """Combine outputs of runs over slices of the seeds or methods (same settings)."""
    docs = [_read_slice(p) for p in paths]
    keys = ("trials_per_method", "epochs_per_trial", "dataset", "subset", "space", "methods")
    if any({k: d["settings"].get(k) for k in keys} != {k: docs[0]["settings"].get(k) for k in keys}
           for d in docs):
        bad_input(f"--merge: {', '.join(paths)} were run with different settings "
                   f"({', '.join(keys)} must match)")
    runs = [r for d in docs for r in d["runs"]]
    env = {**docs[0]["env"], "seconds": sum(d["env"]["seconds"] for d in docs),
           "merged_from": len(docs)}
    return summarize(runs, docs[0]["settings"], env)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0, help="run seeds first..first+seeds-1")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated subset of {', '.join(METHODS)} (merge the rest)")
    p.add_argument("--trials", type=int, default=27, help="trials per method (grid: 27 points)")
    p.add_argument("--epochs", type=int, default=4, help="epochs of an unpruned trial")
    p.add_argument("--subset", type=int, default=5000, help="training images")
    p.add_argument("--dataset", default="mnist", help="fashion-mnist needs $DLOPT_DATA_DIR")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="combine the outputs of runs over slices of seeds or methods; run nothing")
    args = p.parse_args()
    if args.merge:
        print(json.dumps(merge(args.merge), indent=2))
        return
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        p.error(f"--methods {args.methods!r}: unknown {unknown}; allowed: {', '.join(METHODS)}")
    for name in ("seeds", "trials", "epochs", "subset"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    check_dataset(args.dataset)

    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dlopt-hpo-") as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for m in methods:
                runs.append({"seed": seed, "method": m,
                             "curves": run_method(m, seed, args, Path(tmp))})
                print(json.dumps({k: runs[-1][k] for k in ("seed", "method")}), file=sys.stderr)
    settings = {"trials_per_method": args.trials, "epochs_per_trial": args.epochs,
                "dataset": args.dataset, "subset": args.subset, "model": "lenet5",
                "space": SPACE, "methods": METHODS,
                "target": "0.99 x best val_accuracy of the seed"}
    from dlopt.deploy import capture_environment

    env = {**capture_environment(torch.get_num_threads()), "optuna": optuna.__version__,
           "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(summarize(runs, settings, env), indent=2))


if __name__ == "__main__":
    main()
