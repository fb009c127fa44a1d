"""Reliability and security suite, long form: faults, hostile inputs and load, with figures.

    python bench/reliability.py            # bench sizes (~30-40 min on 2 cores)
    python bench/reliability.py --quick    # the CI sizes (a few minutes)
    python bench/reliability.py --only kill_resume,server_fuzz

Prints one JSON object with a key per item of the suite (``kill_resume``,
``kill_during_save``, ``sigterm``, ``malicious_files``, ``non_finite``, ``bad_data``,
``config_fuzz``, ``server_fuzz``, ``load_soak``, ``determinism``), each
``{"passed": bool, ...figures, "failures": [...], "seconds": float}``, plus ``environment``.
The scenarios live in ``tests/reliability/rel_*.py``; the CI tests there run them at the
``--quick`` sizes (``load_soak`` is bench-only: ``--quick`` runs it for seconds, not minutes).
Exit code 0 when every item passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

log = logging.getLogger("reliability")


def _items(quick: bool) -> dict[str, Callable[[], dict[str, Any]]]:
    """Item name -> a call at bench (or ``quick``: CI) size."""
    import rel_config
    import rel_files
    import rel_serve
    import rel_train

    def kill_during_save() -> dict[str, Any]:
        out = rel_train.kill_during_save(5 if quick else 50)
        disk = rel_train.full_disk()
        return {**out, "passed": out["passed"] and disk["passed"], "full_disk": disk,
                "failures": out["failures"] + disk["failures"]}

    return {
        "kill_resume": lambda: rel_train.kill_resume(3 if quick else 20),
        "kill_during_save": kill_during_save,
        "sigterm": lambda: rel_train.sigterm(1 if quick else 5),
        "malicious_files": rel_files.malicious_files,
        "non_finite": rel_train.non_finite,
        "bad_data": rel_files.bad_data,
        "config_fuzz": lambda: rel_config.config_fuzz(300 if quick else 2000),
        "server_fuzz": lambda: rel_serve.server_fuzz(1000 if quick else 5000),
        "load_soak": (lambda: rel_serve.load_soak(3.0, 10.0)) if quick else rel_serve.load_soak,
        "determinism": rel_train.determinism,
    }


def _environment(quick: bool) -> dict[str, Any]:
    import torch

    from dlopt.deploy import capture_environment

    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": quick, **capture_environment(torch.get_num_threads())}


def run(quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    """Run the items (all, or ``only``) and return the JSON-able report."""
    items = _items(quick)
    unknown = sorted(set(only or ()) - set(items))
    if unknown:
        raise SystemExit(f"unknown item(s) {', '.join(unknown)}; allowed: {', '.join(items)}")
    report: dict[str, Any] = {}
    for name, call in items.items():
        if only and name not in only:
            continue
        log.info("%s ...", name)
        t0 = time.perf_counter()
        try:
            out = call()
        except Exception as exc:  # noqa: BLE001 - a crashing scenario is a failed item, not a lost report
            out = {"passed": False, "failures": [f"{type(exc).__name__}: {exc}"],
                   "traceback": traceback.format_exc(limit=5)}
        out["seconds"] = round(time.perf_counter() - t0, 1)
        log.info("%s: %s in %.0f s", name, "passed" if out["passed"] else "FAILED", out["seconds"])
        report[name] = out
    report["environment"] = _environment(quick)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI sizes (minutes instead of ~40)")
    parser.add_argument("--only", default="", help="comma-separated items to run (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON object here")
    args = parser.parse_args(argv)
    # progress lines of this script only: libraries (onnxscript, httpx, dlopt's skipped steps)
    # would otherwise log for every export, request and injected fault
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or None
    report = run(args.quick, only)
    text = json.dumps(report, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0 if all(v.get("passed") for k, v in report.items() if k != "environment") else 1


if __name__ == "__main__":
    sys.exit(main())
