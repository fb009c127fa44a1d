"""What ``train.retain_host_memory`` buys: LeNet-5 training steps with and without it.

The policy is process-wide and cannot be undone, so every measurement is a fresh process
(this script with ``--child``), alternating off / on over ``--rounds``. Each child trains the
zoo's LeNet-5 as ``examples/mnist-fast.yaml`` does (channels_last, ``pool_first``, fused
Adam, label smoothing) on random batches: warm-up steps, then ``--steps`` timed steps,
counting minor page faults.

    python bench/host_memory.py                      # batch 128 and 256, 3 rounds (~1 min)
    python bench/host_memory.py --batches 64,128,512 --rounds 5

Output (one JSON object): per batch size the median step ms and page faults per step with
(``on``) and without (``off``) the policy, ``saved`` (1 - on / off) and the per-round values.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _child(batch: int, steps: int, retain: bool, threads: int) -> dict[str, float]:
    import torch

    from dlopt.train.device import retain_host_memory

    torch.set_num_threads(threads)
    if retain and not retain_host_memory():
        raise SystemExit("retain_host_memory() did not apply here (needs Linux with glibc)")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pool_first import _step_fn  # the same LeNet-5 step (channels_last, pool_first, fused Adam)

    step = _step_fn(True, batch)
    for _ in range(20):
        step()
    f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    for _ in range(steps):
        step()
    ms = (time.perf_counter() - t0) / steps * 1e3
    return {"step_ms": ms, "faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / steps}


def _measure(batch: int, steps: int, retain: bool, threads: int) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", f"{batch}:{steps}:{int(retain)}:{threads}"]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if out.returncode != 0:  # the child has printed why (one line) on stderr
        sys.exit(1)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(rounds: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    med = {k: {m: statistics.median(r[k][m] for r in rounds) for m in ("step_ms", "faults_per_step")}
           for k in ("off", "on")}
    return {"off_step_ms": round(med["off"]["step_ms"], 3), "on_step_ms": round(med["on"]["step_ms"], 3),
            "saved": round(1 - med["on"]["step_ms"] / med["off"]["step_ms"], 4),
            "off_faults_per_step": med["off"]["faults_per_step"], "on_faults_per_step": med["on"]["faults_per_step"],
            "rounds": rounds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="128,256")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # BATCH:STEPS:RETAIN:THREADS
    a = p.parse_args()
    if a.child:
        batch, steps, retain, threads = (int(v) for v in a.child.split(":"))
        print(json.dumps(_child(batch, steps, bool(retain), threads)))
        return
    try:
        batches = [int(b) for b in a.batches.split(",")]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1 or a.steps < 1 or a.rounds < 1 or a.threads < 1:
        p.error("--batches is a comma list of integers >= 1; --steps, --rounds, --threads are integers >= 1")
    rows = {}
    for b in batches:
        rounds = [{k: _measure(b, a.steps, k == "on", a.threads) for k in ("off", "on")} for _ in range(a.rounds)]
        rows[str(b)] = _summary(rounds)
    import torch

    print(json.dumps({"rows": rows, "steps": a.steps, "threads": a.threads, "torch": torch.__version__,
                      "model": "lenet5 (channels_last, pool_first)", "interleave": "fresh process per run, off/on"},
                     indent=1))


if __name__ == "__main__":
    main()
