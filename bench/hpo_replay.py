"""Replay bench/hpo_efficiency.py's comparison on a lattice of precomputed learning curves.

A real run of the bench costs ~6 min for 5 seeds on 2 cores (2026-11-24), and its medians swing
with where a good point falls in the order. The replay asks "would another sampler or pruner
setting, or more epochs per trial, change the ratio?" over many seeds in seconds:

- ``build`` trains the bench's LeNet-5 (same data, config and training seed as
  ``hpo_efficiency.py``) at every point of a lattice over the bench's 3 axes (learning rate
  13 log-spaced points, batch size 5, weight decay 5: 325 trainings) and appends each
  validation curve to a JSON-lines file (resumable; ``--part K/N`` splits the work);
- ``replay`` runs the bench's methods as real optuna studies (dlopt's sampler and pruner
  factories, the bench's settings and grid) whose objective looks up the nearest lattice
  point's curve and reports it epoch by epoch to the pruner, as dlopt's trials do; the grid
  method's points are looked up the same way. The target and the epochs-to-target count are
  the bench's (``hpo_efficiency.seed_row``). A constant-lr curve is prefix-consistent, so a
  lattice built with 8 epochs replays any budget of 1-8 epochs per trial.

    python bench/hpo_replay.py build --out lat0.jsonl --epochs 8 --part 0/2 &   # ~8 min (2 cores)
    python bench/hpo_replay.py build --out lat1.jsonl --epochs 8 --part 1/2
    python bench/hpo_replay.py replay lat0.jsonl lat1.jsonl --seeds 60 --epochs 4,6,8
    DLOPT_DATA_DIR=../shared/data python bench/hpo_replay.py build --dataset fashion-mnist --out f0.jsonl ...

Lattices built with other training seeds (``build --seed K``; each row records its seed) can be
replayed together: replay seed ``s`` then uses the ``s mod K``-th one, as the bench trains its
seed ``s`` with its own training seed. The replay is a model of the bench, not the bench:
a few training seeds, nearest-point lookup.

Output (replay): one JSON object; under ``budgets``, per epochs-per-trial budget and method, the
median and mean epochs to the target over the seeds, how many seeds never reached it, and
grid / method; under ``reference``, per budget, a bound no sampler can beat by much (the random
first trial, then only points that reach the target: the good region known after one trial)
and how many lattice points reach the target (median over seeds).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hpo_efficiency as hb  # noqa: E402  (the bench this replays: its space, methods, target)

#: Methods replayed besides the bench's own: (sampler, sampler options, pruner, pruner options).
VARIANTS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    **{m: (s["sampler"]["name"], s["sampler"].get("options", {}), s["pruner"]["name"],
           s["pruner"].get("options", {})) for m, s in hb.METHODS.items() if m != "grid"},
    "tpe_asha_rf2": ("tpe", {"n_startup_trials": 5}, "asha", {"min_resource": 1, "reduction_factor": 2}),
    "tpe_startup10_asha": ("tpe", {"n_startup_trials": 10}, "asha", {}),
    "tpe_startup2_asha": ("tpe", {"n_startup_trials": 2}, "asha", {}),
    "tpe_asha_rf4": ("tpe", {"n_startup_trials": 5}, "asha", {"reduction_factor": 4}),
    "tpe_independent_asha": ("tpe", {"n_startup_trials": 5, "multivariate": False, "group": False}, "asha", {}),
    "tpe_unpruned": ("tpe", {"n_startup_trials": 5}, "none", {}),
    "tpe_median": ("tpe", {"n_startup_trials": 5}, "median", {}),
    "tpe_hyperband": ("tpe", {"n_startup_trials": 5}, "hyperband", {}),
    "random_asha": ("random", {}, "asha", {}),
    "qmc_asha": ("qmc", {}, "asha", {}),
}
POINTS = (13, 5, 5)  # lattice points per axis, in hb.SPACE's order


def lattice_axes(points: tuple[int, ...] = POINTS) -> list[list[float]]:
    """Log-spaced points over each axis's range (ints for an int axis), as dlopt spaces a grid."""
    return [_grid_values(path, {**spec, "grid": n}) for (path, spec), n in zip(hb.SPACE.items(), points)]


def _grid_values(path: str, spec: dict[str, Any]) -> list[Any]:
    """The grid sampler's values on one axis, computed by dlopt.tune itself."""
    from dlopt.config import SearchParam
    from dlopt.tune._space import Axis

    return Axis(path, SearchParam(**spec)).grid_values()


def _nearest(value: float, axis: list[float]) -> int:
    return min(range(len(axis)), key=lambda i: abs(math.log(value) - math.log(axis[i])))


# ------------------------------------------------------------------------------ build
def build(out: Path, *, epochs: int, seed: int, part: tuple[int, int], points: tuple[int, ...],
          subset: int, dataset: str = "mnist") -> int:
    """Train the lattice points of ``part`` not yet in ``out``; returns how many were trained."""
    import torch

    from dlopt.config import RunConfig, parse_config
    from dlopt.train import train_run
    from dlopt.tune._space import set_path

    torch.set_num_threads(1)
    axes = lattice_axes(points)
    done = {tuple(json.loads(r)["idx"]) for r in out.read_text().splitlines()} if out.exists() else set()
    # slice first, then skip what is done: a resumed part keeps its own points
    todo = [i for i in list(itertools.product(*map(range, points)))[part[0]::part[1]] if i not in done]
    with tempfile.TemporaryDirectory(prefix="dlopt-hpo-replay-") as tmp:
        for idx in todo:
            data = hb.base_config(argparse.Namespace(dataset=dataset, subset=subset, epochs=epochs))
            data["train"]["seed"] = seed
            for path, axis, i in zip(hb.SPACE, axes, idx):
                set_path(data, path, axis[i])
            result = train_run(parse_config(data, RunConfig), run_dir=Path(tmp) / "run", overwrite=True)
            curve = [h.get("val_accuracy") for h in result.history]
            with out.open("a") as f:
                f.write(json.dumps({"idx": list(idx), "seed": seed, "curve": curve}) + "\n")
    return len(todo)


# ----------------------------------------------------------------------------- replay
Table = dict[tuple[int, ...], list[float]]


def load_lattice(paths: list[Path]) -> dict[int, Table]:
    """The lattice's curves per training seed (a row without ``seed`` is seed 0, the default)."""
    tables: dict[int, Table] = {}
    for p in paths:
        try:
            for r in (json.loads(r) for r in p.read_text().splitlines() if r.strip()):
                tables.setdefault(int(r.get("seed", 0)), {})[tuple(r["idx"])] = [float(a) for a in r["curve"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            hb.bad_input(f"cannot read lattice {p}: {exc}")
    return tables


def _lookup(table: Table, axes: list[list[float]]) -> Callable[[dict[str, Any]], list[float]]:
    def curve(params: dict[str, Any]) -> list[float]:
        return table[tuple(_nearest(params[p], axis) for p, axis in zip(hb.SPACE, axes))]
    return curve


def _study_curves(sampler: Any, pruner: Any, curve_of: Callable[[dict[str, Any]], list[float]],
                  *, trials: int, epochs: int) -> list[list[float]]:
    """One study as the bench runs it; per trial (in order) the epochs it was allowed to train."""
    import optuna

    curves: list[list[float]] = []

    def objective(trial: optuna.Trial) -> float:
        params = {}
        for path, spec in hb.SPACE.items():
            suggest = trial.suggest_int if spec["type"] == "int" else trial.suggest_float
            params[path] = suggest(path, spec["low"], spec["high"], log=spec["log"])
        seen: list[float] = []
        curves.append(seen)
        for epoch, acc in enumerate(curve_of(params)[:epochs], 1):
            seen.append(acc)
            trial.report(acc, epoch)
            if epoch < epochs and trial.should_prune():  # as dlopt: a fully trained trial completes
                raise optuna.TrialPruned()
        return seen[-1]

    optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner).optimize(objective, n_trials=trials)
    return curves


def _method(name: str, seed: int, curve_of: Callable[[dict[str, Any]], list[float]], *, trials: int,
            epochs: int) -> list[list[float]]:
    from dlopt.tune._registry import PRUNERS, SAMPLERS

    if name == "grid":
        grid = {p: _grid_values(p, spec) for p, spec in hb.SPACE.items()}
        sampler = SAMPLERS.create("grid", search_space=grid, seed=seed)
        return _study_curves(sampler, PRUNERS.create("none"), curve_of, trials=trials, epochs=epochs)
    s_name, s_opts, p_name, p_opts = VARIANTS[name]
    return _study_curves(SAMPLERS.create(s_name, seed=seed, **s_opts), PRUNERS.create(p_name, **p_opts),
                         curve_of, trials=trials, epochs=epochs)


def _oracle(first: list[float], table: Table, target: float, epochs: int,
            rng: random.Random) -> tuple[int, int]:
    """A bound, not a method: the random sampler's first trial, then a point drawn among those
    that reach ``target`` (as if the good region were known after one trial). Returns its epochs
    to the target and how many lattice points reach it."""
    hits = [c[:epochs] for c in table.values() if max(c[:epochs]) >= target]
    n, reached = hb.epochs_to_target([first], target)
    if not reached:
        n += hb.epochs_to_target([rng.choice(hits)], target)[0]
    return n, len(hits)


def replay(tables: dict[int, Table], *, methods: list[str], seeds: int,
           budgets: list[int], trials: int, points: tuple[int, ...]) -> dict[str, Any]:
    """Per budget (epochs per trial): each method's epochs to the bench's target over ``seeds``,
    and the oracle bound (``_oracle``) under ``reference``. Seed ``s`` replays the lattice of
    the ``s mod K``-th of its K training seeds (the bench trains seed ``s`` with seed ``s``)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    axes = lattice_axes(points)
    order = [tables[k] for k in sorted(tables)]
    out: dict[str, Any] = {"budgets": {}, "reference": {}}
    for epochs in budgets:
        spent: dict[str, list[int]] = {m: [] for m in methods}
        missed = dict.fromkeys(methods, 0)
        oracle: list[int] = []
        points_hit: list[int] = []
        for seed in range(seeds):
            table = order[seed % len(order)]
            curve_of = _lookup(table, axes)
            curves = {m: _method(m, seed, curve_of, trials=trials, epochs=epochs) for m in methods}
            row = hb.seed_row(seed, {m: curves[m] for m in hb.METHODS})  # the bench's own target
            for m in methods:
                n, reached = hb.epochs_to_target(curves[m], row["target"])
                spent[m].append(n)
                missed[m] += not reached
            n, hit = _oracle(curves["random"][0], table, row["target"], epochs, random.Random(seed))
            oracle.append(n)
            points_hit.append(hit)
        grid = statistics.median(spent["grid"])
        out["budgets"][str(epochs)] = {
            m: {"median_epochs": statistics.median(v), "mean_epochs": round(statistics.mean(v), 2),
                "not_reached": missed[m], "ratio_grid_over": round(grid / statistics.median(v), 3)}
            for m, v in spent.items()}
        out["reference"][str(epochs)] = {
            "oracle_after_first": {"median_epochs": statistics.median(oracle),
                                   "ratio_grid_over": round(grid / statistics.median(oracle), 3)},
            "lattice_points_reaching_target": statistics.median(points_hit),
            "lattice_points": len(order[0]), "training_seeds": sorted(tables)}
    return out


# ------------------------------------------------------------------------------- main
def _ints(text: str, sep: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(v) for v in text.split(sep))
    except ValueError:
        return None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="train the lattice (appends to --out, resumable)")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--epochs", type=int, default=4)
    b.add_argument("--seed", type=int, default=0, help="training seed (the bench's seed 0)")
    b.add_argument("--part", default="0/1", help="K/N: train every N-th missing point from K")
    b.add_argument("--subset", type=int, default=5000, help="training images (the bench's)")
    b.add_argument("--dataset", default="mnist", help="the bench's --dataset")
    r = sub.add_parser("replay", help="replay the methods on a built lattice")
    r.add_argument("lattice", type=Path, nargs="+")
    r.add_argument("--seeds", type=int, default=60)
    r.add_argument("--epochs", default="4", help="comma list of epochs-per-trial budgets")
    r.add_argument("--trials", type=int, default=27)
    r.add_argument("--methods", default=",".join(VARIANTS), help="methods besides the bench's own")
    for q in (b, r):
        q.add_argument("--points", default=",".join(map(str, POINTS)), help="lattice points per axis")
    args = p.parse_args(argv)
    args.points = _ints(args.points, ",")
    if not args.points or len(args.points) != len(hb.SPACE) or min(args.points) < 2:
        p.error(f"--points has one integer >= 2 per axis ({len(hb.SPACE)} axes)")
    if args.cmd == "build":
        args.part = _ints(args.part, "/")
        if not args.part or len(args.part) != 2 or not 0 <= args.part[0] < args.part[1]:
            p.error("--part is K/N with 0 <= K < N")
    else:
        args.epochs = _ints(args.epochs, ",")
        if not args.epochs or min(args.epochs) < 1:
            p.error("--epochs is a comma list of integers >= 1")
    for name in ("epochs", "subset") if args.cmd == "build" else ("seeds", "trials"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.cmd == "replay":
        asked = [m for m in args.methods.split(",") if m]
        unknown = sorted(set(asked) - {"grid", *VARIANTS})
        if unknown:
            p.error(f"--methods: unknown {unknown}; allowed: {', '.join(VARIANTS)} "
                    f"(the bench's {', '.join(hb.METHODS)} always run: they set the target)")
        args.methods = [*hb.METHODS, *[m for m in asked if m not in hb.METHODS]]
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.cmd == "build":
        hb.check_dataset(args.dataset)
        n = build(args.out, epochs=args.epochs, seed=args.seed, part=args.part, points=args.points,
                  subset=args.subset, dataset=args.dataset)
        print(json.dumps({"trained": n, "out": str(args.out)}))
        return
    tables = load_lattice(args.lattice)
    size = len(list(itertools.product(*map(range, args.points))))
    if not tables:
        hb.bad_input(f"the lattice {', '.join(map(str, args.lattice))} has no points (build it first)")
    for seed, table in sorted(tables.items()):
        if len(table) < size:
            hb.bad_input(f"the lattice of training seed {seed} has {len(table)} points, "
                         f"{size - len(table)} missing (build it to the end)")
    short = min(len(c) for table in tables.values() for c in table.values())
    if max(args.epochs) > short:
        hb.bad_input(f"--epochs {max(args.epochs)}: the lattice's curves have {short} epochs")
    result = replay(tables, methods=args.methods, seeds=args.seeds, budgets=args.epochs,
                    trials=args.trials, points=args.points)
    print(json.dumps({**result, "settings": {"seeds": args.seeds, "trials": args.trials,
                                                      "points": args.points, "space": hb.SPACE,
                                                      "variants": VARIANTS}}, indent=1))


if __name__ == "__main__":
    main()
