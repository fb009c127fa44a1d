"""Quality of the example recipes: train each ``examples/*.yaml`` recipe and report its test
metric against the target the training issue sets.

    python bench/quality.py                          # every recipe (tens of minutes on 2 cores)
    python bench/quality.py digits-mlp diabetes-mlp  # only these
    python bench/quality.py --cheap                  # the recipes that take seconds

Prints one JSON object ``{recipe: {metric: value, "seconds": s, ...}}`` on stdout: the
headline metric with its target and whether it was reached, every test metric of the run,
wall-clock ``seconds`` (data loading + training + evaluation) and ``train_seconds``. The
environment (versions, threads, git commit) goes to stderr. Runs go to a temporary folder
unless ``--run-root`` is given. ``finetune-fashion`` starts from this invocation's
``mnist-fast`` run when there is one (its recipe names ``runs/mnist-fast`` otherwise).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# recipe -> (headline test metric, target); from the training issue's "Must show" list
TARGETS: dict[str, tuple[str, float | None]] = {
    "mnist-seed": ("accuracy", 0.978),
    "mnist-fast": ("accuracy", 0.990),
    "digits-mlp": ("accuracy", 0.95),
    "mnist1d-cnn": ("accuracy", 0.94),
    "breast-cancer-mlp": ("auc", 0.99),
    "diabetes-mlp": ("r2", 0.45),
    "fashion-resnet": ("accuracy", 0.91),
    "finetune-fashion": ("accuracy", None),
}
# ordered so that mnist-fast trains before finetune-fashion starts from it
ORDER = ["digits-mlp", "breast-cancer-mlp", "diabetes-mlp", "mnist1d-cnn", "mnist-fast",
         "mnist-seed", "finetune-fashion", "fashion-resnet"]
CHEAP = ["digits-mlp", "breast-cancer-mlp", "diabetes-mlp", "mnist1d-cnn"]


def _environment() -> dict[str, Any]:
    import torch

    from dlopt.deploy import capture_environment

    return capture_environment(torch.get_num_threads())


def run_recipe(name: str, run_root: Path, *, overrides: list[str], done: dict[str, Path]) -> dict[str, Any]:
    """Train one recipe; its headline metric, target, every test metric and the seconds."""
    from dlopt.config import load_config
    from dlopt.errors import DloptError
    from dlopt.train import train_run

    sets = [*overrides, "train.progress=false"]
    if name == "finetune-fashion" and "mnist-fast" in done:
        sets.append(f"train.transfer.init_from={done['mnist-fast']}")
    metric, target = TARGETS.get(name, ("accuracy", None))
    t0 = time.perf_counter()
    try:
        cfg = load_config(EXAMPLES / f"{name}.yaml", sets)
        result = train_run(cfg, run_dir=run_root / name, overwrite=True)
    except DloptError as exc:  # e.g. Fashion-MNIST files absent: report, keep going
        return {"skipped": str(exc)}
    done[name] = result.run_dir
    s = result.summary
    value = s["test"].get(metric)
    return {
        metric: value,
        "target": target,
        "reached": None if target is None or value is None else bool(value >= target),
        "seconds": round(time.perf_counter() - t0, 1),
        "train_seconds": s["train_seconds"],
        "epochs": s["epochs"],
        "test": s["test"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipes", nargs="*", help=f"recipe names (default: all of {', '.join(ORDER)})")
    p.add_argument("--cheap", action="store_true", help=f"only {', '.join(CHEAP)}")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="override for every recipe")
    p.add_argument("--run-root", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    args = p.parse_args(argv)
    names = args.recipes or (CHEAP if args.cheap else ORDER)
    unknown = [n for n in names if not (EXAMPLES / f"{n}.yaml").is_file()]
    if unknown:
        p.error(f"unknown recipe(s) {', '.join(unknown)}; available: {', '.join(ORDER)}")
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps({"environment": _environment()}), file=sys.stderr)
    out: dict[str, Any] = {}
    done: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="dlopt-quality-") as tmp:
        root = args.run_root or Path(tmp)
        for name in sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
            out[name] = run_recipe(name, root, overrides=args.overrides, done=done)
            print(f"{name}: {json.dumps(out[name])}", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
