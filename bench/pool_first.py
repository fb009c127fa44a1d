"""What ``train.pool_first`` buys: LeNet-5 training steps with and without the rewrite.

Both variants train the zoo's LeNet-5 in channels_last with fused Adam and label smoothing on
the same random batch; their steps are interleaved (A B A B ...) in blocks so machine load hits
both alike. Prints one JSON object: median ms per step for each variant and batch size and the
fraction saved.

    python bench/pool_first.py                  # batches 64, 128, 256, 512
    python bench/pool_first.py --batches 128 --rounds 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn


def _step_fn(rewrite: bool, batch: int) -> Callable[[], None]:
    from dlopt.models import create_model
    from dlopt.train.techniques import pool_first

    torch.manual_seed(0)
    model = create_model("lenet5", input_shape=(1, 28, 28), num_classes=10)
    if rewrite:
        pool_first(model)
    model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)

    def step() -> None:
        loss_fn(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def measure(batch: int, *, rounds: int, block: int) -> dict[str, Any]:
    """Median seconds per step of both variants, ``rounds`` interleaved blocks of ``block`` steps."""
    steps = {"plain": _step_fn(False, batch), "pool_first": _step_fn(True, batch)}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():  # warm-up: oneDNN primitive creation
        for _ in range(5):
            fn()
    for _ in range(rounds):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            for _ in range(block):
                fn()
            times[name].append((time.perf_counter() - t0) / block)
    plain, first = statistics.median(times["plain"]), statistics.median(times["pool_first"])
    return {"batch": batch, "plain_ms": round(1e3 * plain, 3), "pool_first_ms": round(1e3 * first, 3),
            "saved": round(1 - first / plain, 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="64,128,256,512")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--block", type=int, default=5, help="steps per timed block")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = [measure(int(b), rounds=a.rounds, block=a.block) for b in a.batches.split(",")]
    print(json.dumps({"rows": rows, "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "cpu_capability": torch.backends.cpu.get_cpu_capability()}, indent=1))


if __name__ == "__main__":
    main()
