"""What ONNX Runtime's memory patterns cost a server that sees every batch size.

A session plans memory per input shape; the server runs each request at its own batch size
(1 .. --max-batch), so the plans add up. For each zoo model this exports the untrained model,
opens sessions with dlopt's options (``dlopt.deploy._runtime.session_options``, 1 thread) with
``enable_mem_pattern`` on (ORT's default and dlopt's, except in ``dlopt serve``) and off
(what ``dlopt serve`` uses), and reports:

* RSS growth (MiB) after each round that feeds every batch size once, shuffled, in a fresh
  process per setting (growth that stops after a round is bounded, not a leak);
* median latency (ms) at batch 1 and 64, the settings interleaved in one process.

    python bench/ort_mem_pattern.py                       # lenet5 and resnet, 3 rounds
    python bench/ort_mem_pattern.py --models lenet5 --max-batch 32 --rounds 2 --runs 20

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETTINGS = {"pattern_on": True, "pattern_off": False}


def _session(path: Path, pattern: bool) -> Any:
    import onnxruntime as ort

    from dlopt.deploy._runtime import session_options

    opts = session_options(threads=1, mem_pattern=pattern)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _growth(path: Path, pattern: bool, max_batch: int, rounds: int) -> dict[str, Any]:
    """Child process: RSS growth over rounds of every batch size (after a warm-up)."""
    import numpy as np

    s = _session(path, pattern)
    name, shape = s.get_inputs()[0].name, s.get_inputs()[0].shape[1:]
    rng = np.random.default_rng(0)
    for n in (1, max_batch):
        s.run(None, {name: rng.random((n, *shape), dtype=np.float32)})
    base, after = _rss_mib(), []
    for _ in range(rounds):
        for n in rng.permutation(np.arange(1, max_batch + 1)):
            s.run(None, {name: rng.random((int(n), *shape), dtype=np.float32)})
        after.append(round(_rss_mib() - base, 1))
    return {"rss_mib_start": round(base, 1), "growth_mib_after_round": after}


def _latency(path: Path, runs: int) -> dict[str, float]:
    import numpy as np

    sessions = {k: _session(path, v) for k, v in SETTINGS.items()}
    out: dict[str, float] = {}
    for n in (1, 64):
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(3):  # interleaved blocks: machine load hits both settings alike
            for k, s in sessions.items():
                name, shape = s.get_inputs()[0].name, s.get_inputs()[0].shape[1:]
                x = np.random.default_rng(0).random((n, *shape), dtype=np.float32)
                for _ in range(5):
                    s.run(None, {name: x})
                for _ in range(runs if n == 1 else max(runs // 5, 5)):
                    t = time.perf_counter()
                    s.run(None, {name: x})
                    times[k].append((time.perf_counter() - t) * 1e3)
        for k, ts in times.items():
            out[f"{k}_b{n}_ms"] = round(statistics.median(ts), 4)
    return out


def _export(model: str, folder: Path) -> Path:
    import torch

    from dlopt.deploy import export_onnx
    from dlopt.models import create_model

    net = create_model(model, input_shape=(1, 28, 28), num_classes=10).eval()
    path = folder / f"{model}.onnx"
    export_onnx(net, torch.zeros(1, 1, 28, 28), path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,resnet")
    ap.add_argument("--max-batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=300, help="timed runs at batch 1 per block")
    ap.add_argument("--child", nargs=2, metavar=("ONNX", "SETTING"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.max_batch < 1 or args.rounds < 1 or args.runs < 1:
        sys.exit("error: --max-batch, --rounds and --runs must be >= 1")
    if args.child:
        print(json.dumps(_growth(Path(args.child[0]), SETTINGS[args.child[1]], args.max_batch,
                                 args.rounds)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="dlopt-mempattern-") as tmp:
        for model in args.models.split(","):
            path = _export(model, Path(tmp))
            row: dict[str, Any] = {"model": model}
            for setting in SETTINGS:
                child = subprocess.run(
                    [sys.executable, __file__, "--child", str(path), setting,
                     "--max-batch", str(args.max_batch), "--rounds", str(args.rounds)],
                    capture_output=True, text=True, check=True)
                row[setting] = json.loads(child.stdout)
            row["latency"] = _latency(path, args.runs)
            rows.append(row)
    print(json.dumps({"max_batch": args.max_batch, "rounds": args.rounds, "threads": 1,
                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
