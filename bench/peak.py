"""The machine's measured matmul peaks: fp32 and bf16, through ``torch.matmul`` and oneDNN.

On this AMD CPU ``torch.matmul`` fp32 goes through MKL at a fraction of what the same GEMM
reaches as a oneDNN convolution (a 1x1 conv over a channels_last tensor is a GEMM:
``(N*H*W, Cin) @ (Cin, Cout)``), so both paths are reported. Each figure is the best of
several timed calls after a warm-up (a peak, not a typical speed); on a busy machine they
come out low.

    python bench/peak.py            # ~5-10 s
    python bench/peak.py --quick    # smaller problems, ~1-2 s

Output: one JSON object, GFLOP/s: ``fp32_matmul``, ``fp32_onednn``, ``bf16_matmul``,
``bf16_onednn``, plus ``threads``, ``torch``, ``mkldnn`` (oneDNN available) and ``sizes``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable

import torch

__all__ = ["measure"]


def _best_gflops(fn: Callable[[], object], flop: float, *, repeats: int) -> float:
    fn()  # warm-up: allocation, oneDNN primitive creation
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return flop / best / 1e9


def matmul_gflops(n: int, dtype: torch.dtype, *, repeats: int) -> float:
    """``torch.matmul`` of two ``n x n`` matrices (MKL for fp32 on CPU)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    with torch.inference_mode():
        return _best_gflops(lambda: torch.matmul(a, b), 2.0 * n ** 3, repeats=repeats)


def onednn_gflops(n: int, dtype: torch.dtype, *, repeats: int) -> float:
    """The same ``n x n x n`` GEMM as a oneDNN 1x1 convolution in channels_last."""
    side = int(n ** 0.5)
    rows = side * side  # N*H*W rows of the GEMM
    x = torch.randn(1, n, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(n, n, 1, 1, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return _best_gflops(lambda: torch.nn.functional.conv2d(x, w), 2.0 * rows * n * n, repeats=repeats)


def measure(*, quick: bool = False) -> dict[str, float]:
    """GFLOP/s peaks (best of a few runs) for fp32/bf16 via matmul and via oneDNN."""
    n, repeats = (512, 3) if quick else (2048, 5)
    out = {
        "fp32_matmul": matmul_gflops(n, torch.float32, repeats=repeats),
        "fp32_onednn": onednn_gflops(n, torch.float32, repeats=repeats),
        "bf16_matmul": matmul_gflops(n, torch.bfloat16, repeats=repeats),
        "bf16_onednn": onednn_gflops(n, torch.bfloat16, repeats=repeats),
    }
    return {k: round(v, 1) for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small problems (a rough figure)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peaks = measure(quick=args.quick)
    print(json.dumps({**peaks, "unit": "GFLOP/s", "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "mkldnn": torch.backends.mkldnn.is_available(),
                      "sizes": "512^3" if args.quick else "2048^3"}, indent=1))


if __name__ == "__main__":
    main()
