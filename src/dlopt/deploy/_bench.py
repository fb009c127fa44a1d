"""``benchmark``: latency, throughput, memory, size and quality of contestants, side by side.

Each contestant runs in a fresh ``python -m dlopt.deploy._bench_worker`` process with the
same inputs and the same fixed thread count (OMP/MKL variables, ``torch.set_num_threads``,
ORT ``intra_op_num_threads``). The report follows the JSON contract in docs/deploy.md:
``schema_version``, ``environment``, ``baseline``, ``settings`` and, per contestant per batch
size, ``p50_ms p95_ms p99_ms throughput peak_mb size_bytes params macs accuracy r2 speedup
verdict`` (plus spread: ``iqr_ms mad_ms mean_ms runs noise_threshold``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dlopt.deploy._env import capture_environment
from dlopt.deploy._stats import NOISE_FLOOR, verdict
from dlopt.errors import ConfigError, RunError

__all__ = ["Contestant", "benchmark", "benchmark_checked", "bench_table", "sample_rows", "zoo_source", "SCHEMA_VERSION"]

log = logging.getLogger(__name__)

# benchmark's defaults for the settings bench_run leaves to it (one value for both)
_WARMUP_SECONDS, _MAX_SECONDS, _TIMEOUT_S = 0.2, 20.0, 900.0

SCHEMA_VERSION = 1
_WORKER = "dlopt.deploy._bench_worker"
# per-contestant figures copied into every batch-size entry
_MODEL_KEYS = ("size_bytes", "params", "macs", "accuracy", "r2")


@dataclass(frozen=True)
class Contestant:
    """One way to run the model: a report ``name``, a worker ``runner`` and its ``source``.

    ``source`` is JSON: ``{"run": dir}`` or ``{"zoo": {name, options, input_shape,
    num_classes, weights}}`` for PyTorch runners, ``{"onnx": path}`` for ONNX Runtime.
    """

    name: str
    runner: str
    source: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def pytorch(cls, source: dict[str, Any], *, compiled: bool = False) -> "Contestant":
        """PyTorch eager FP32, or ``torch.compile`` (compiled during warm-up)."""
        return cls("torch.compile", "compile", source) if compiled else cls("pytorch", "pytorch", source)

    @classmethod
    def onnx(cls, path: str | os.PathLike, *, int8: bool = False) -> "Contestant":
        """ONNX Runtime on an FP32 or a quantized INT8 model file."""
        name = "onnxruntime-int8" if int8 else "onnxruntime"
        return cls(name, "onnxruntime", {"onnx": str(Path(path).resolve())})


def zoo_source(model: Any, name: str, *, input_shape: Sequence[int], num_classes: int,
               weights: str | os.PathLike, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save a zoo model's weights (safetensors) and return the source a worker rebuilds it from."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights))
    return {"zoo": {"name": name, "options": dict(options or {}), "input_shape": list(input_shape),
                    "num_classes": int(num_classes), "weights": str(Path(weights).resolve())}}


def sample_rows(x: np.ndarray, y: np.ndarray | None, n: int | None, *,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``n`` test rows a benchmark measures (all when ``n`` is None or covers them): a
    seeded random sample, stratified by class for class-id labels as ``data.test_subset`` is,
    in the split's order. The first ``n`` rows would score what the file happens to start
    with (LeNet-5 on MNIST: 81.6% on the first 500, 84.9% on all 10000)."""
    if n is None or n >= len(x):
        return x, y
    from dlopt.data._split import take

    labels = np.zeros(len(x)) if y is None else np.asarray(y)
    keep, _ = take(labels, n, seed=seed, stratify=np.issubdtype(labels.dtype, np.integer))
    keep = np.sort(keep)
    return x[keep], None if y is None else y[keep]


def _worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


def _run_worker(c: Contestant, spec: dict[str, Any], tmp: Path, threads: int, timeout_s: float) -> dict[str, Any]:
    from dlopt.deploy._bench_worker import RUNNERS

    RUNNERS.get(c.runner)
    spec_path = tmp / f"{c.name}.json"
    spec_path.write_text(json.dumps({**spec, "runner": c.runner, "source": c.source}))
    log.info("benchmarking %s in a fresh process", c.name)
    try:
        done = subprocess.run([sys.executable, "-m", _WORKER, str(spec_path)], capture_output=True,
                              text=True, timeout=timeout_s, env=_worker_env(threads), check=False)
    except subprocess.TimeoutExpired:
        raise RunError(f"benchmark of {c.name!r} exceeded {timeout_s:g} s") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise RunError(f"benchmark of {c.name!r} failed: {lines[-1] if lines else done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _entries(result: dict[str, Any], base: dict[str, Any] | None,
             paired: dict[str, list[float]] | None = None) -> dict[str, dict[str, Any]]:
    out = {}
    for bs, stats in result["batches"].items():
        entry = {**stats, **{k: result[k] for k in _MODEL_KEYS}}
        if base is None:
            entry.update(speedup=1.0, noise_threshold=None, verdict="baseline")
        else:
            rounds = paired[bs] if paired else None
            speed, threshold, word = verdict(base["batches"][bs], stats, paired=rounds)
            entry.update(speedup=speed, noise_threshold=threshold, verdict=word)
            if rounds:
                entry["round_speedups"] = [round(r, 4) for r in rounds]
        out[bs] = entry
    return out


def _merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One worker result from several rounds: medians of the per-round statistics, runs
    summed, the highest peak memory."""
    if len(runs) == 1:
        return runs[0]
    merged = {**runs[0], "load_seconds": float(np.median([r["load_seconds"] for r in runs])),
              "rss_mb_base": float(np.median([r["rss_mb_base"] for r in runs])), "batches": {}}
    for bs, first in runs[0]["batches"].items():
        per = [r["batches"][bs] for r in runs]
        stats = {k: float(np.median([p[k] for p in per])) for k, v in first.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        stats.update(runs=int(sum(p["runs"] for p in per)), peak_mb=max(p["peak_mb"] for p in per),
                     peak_reset=all(p["peak_reset"] for p in per),
                     throughput=int(bs) * 1000.0 / stats["p50_ms"] if stats["p50_ms"] > 0 else float("inf"))
        merged["batches"][bs] = stats
    return merged


def _paired(rounds: list[dict[str, dict[str, Any]]], base: str, name: str) -> dict[str, list[float]] | None:
    """Per batch size, the baseline/contestant p50 ratio of each round (None for one round)."""
    if len(rounds) < 2:
        return None
    return {bs: [r[base]["batches"][bs]["p50_ms"] / r[name]["batches"][bs]["p50_ms"] for r in rounds]
            for bs in rounds[0][name]["batches"]}


def _fitting_inputs(contestants: Sequence[Contestant], x: np.ndarray, y: np.ndarray | None,
                    checked_shape: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``x, y`` when they fit the ONNX contestants' input shape (``checked_shape`` when the
    caller checked it, else each file's). ONNX files alone are timed on random inputs of their
    shape (a warning, no labels) instead, as an .onnx naming no dataset is: its metadata can
    name data it was not trained on. Otherwise one line (ConfigError)."""
    from dlopt.deploy._runtime import OnnxModel

    shapes = {c.source["onnx"]: checked_shape if checked_shape is not None
              else tuple(OnnxModel.load(c.source["onnx"]).input_shape)
              for c in contestants if "onnx" in c.source}
    if len(set(shapes.values())) > 1:
        named = ", ".join(f"{Path(p).name}: {s}" for p, s in shapes.items())
        raise ConfigError(f"benchmark contestants take inputs of different shapes ({named}); allowed: files of "
                          f"one model")
    if not shapes or set(shapes.values()) == {x.shape[1:]}:
        return x, y
    path, shape = next(iter(shapes.items()))
    if len(shapes) < len(contestants):  # a PyTorch contestant takes x as it is: no random stand-in
        raise ConfigError(f"benchmark inputs of shape {x.shape[1:]} do not fit {path} (takes {shape}); "
                          f"allowed: inputs of the model's shape")
    log.warning("%s takes inputs of shape %s, not %s as the data given (its metadata can name data it was not "
                "trained on): timing random inputs, accuracy not measured", path, shape, x.shape[1:])
    return np.random.default_rng(0).standard_normal((len(x), *shape)).astype(np.float32), None


def benchmark(
    contestants: Sequence[Contestant],
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    batch_sizes: Sequence[int] = (1, 8, 64),
    threads: int = 1,
    min_runs: int = 30,
    min_seconds: float = 1.0,
    warmup_seconds: float = _WARMUP_SECONDS,
    max_seconds: float = _MAX_SECONDS,
    baseline: str | None = None,
    timeout_s: float = _TIMEOUT_S,
    model: dict[str, Any] | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    """Time every contestant on the same inputs ``x`` (model inputs, float32) and compare.

    ``y`` gives the quality figure: test ``accuracy`` for class ids (int), ``r2`` for
    regression targets (float). ``baseline`` defaults to ``pytorch`` when present,
    else the first contestant. ``rounds`` > 1 times every contestant once per round (A B C
    A B C ..., a fresh process each time): statistics are the medians over rounds and each
    speedup is the median of the per-round ratios, so drift in machine load between
    processes cannot make a verdict. Returns the JSON-able report.
    """
    return benchmark_checked(contestants, x, y, None, batch_sizes=batch_sizes, threads=threads, min_runs=min_runs,
                      min_seconds=min_seconds, warmup_seconds=warmup_seconds, max_seconds=max_seconds,
                      baseline=baseline, timeout_s=timeout_s, model=model, rounds=rounds)


def benchmark_checked(contestants: Sequence[Contestant], x: np.ndarray, y: np.ndarray | None,
                      checked_shape: tuple[int, ...] | None, *, batch_sizes: Sequence[int], threads: int,
                      min_runs: int, min_seconds: float, baseline: str | None, model: dict[str, Any] | None,
                      rounds: int, warmup_seconds: float = _WARMUP_SECONDS,
                      max_seconds: float = _MAX_SECONDS, timeout_s: float = _TIMEOUT_S) -> dict[str, Any]:
    """:func:`benchmark` for a caller that has checked the input shape every ONNX contestant
    takes (``checked_shape``: ``bench_run`` loads each file once and checks it against the
    run); the contestants are not loaded again to read it. None loads each file to read it."""
    names = [c.name for c in contestants]
    if not contestants or len(set(names)) != len(names):
        raise ConfigError(f"benchmark contestants {names} must be non-empty with unique names")
    base_name = baseline or ("pytorch" if "pytorch" in names else names[0])
    if base_name not in names:
        raise ConfigError(f"benchmark baseline {base_name!r} is not a contestant; allowed: {', '.join(names)}")
    if rounds < 1:
        raise ConfigError(f"benchmark rounds={rounds} is invalid; allowed: an integer >= 1")
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise ConfigError(f"batch sizes {list(batch_sizes)} are invalid; allowed: integers >= 1")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) == 0:
        raise ConfigError("benchmark needs at least one input sample")
    x, y = _fitting_inputs(contestants, x, y, checked_shape)
    spec = {"batch_sizes": sizes, "threads": int(threads), "min_runs": int(min_runs),
            "min_seconds": float(min_seconds), "warmup_seconds": float(warmup_seconds),
            "max_seconds": float(max_seconds)}
    ordered = sorted(contestants, key=lambda c: c.name != base_name)
    per_round: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="dlopt-bench-") as tmp:
        arrays = {"x": x} if y is None else {"x": x, "y": np.asarray(y)}
        np.savez(Path(tmp) / "inputs.npz", **arrays)
        spec["inputs"] = str(Path(tmp) / "inputs.npz")
        for _ in range(rounds):
            per_round.append({c.name: _run_worker(c, spec, Path(tmp), threads, timeout_s) for c in ordered})
    results = {c.name: _merge_rounds([r[c.name] for r in per_round]) for c in ordered}
    base = results[base_name]
    return {
        "schema_version": SCHEMA_VERSION,
        "environment": capture_environment(threads),
        "baseline": base_name,
        "model": model or {},
        "settings": {**{k: v for k, v in spec.items() if k != "inputs"}, "samples": len(x),
                     "noise_floor": NOISE_FLOOR, "rounds": rounds},
        "contestants": {
            name: _entries(res, None if name == base_name else base, _paired(per_round, base_name, name))
            for name, res in results.items()
        },
        "load_seconds": {name: res["load_seconds"] for name, res in results.items()},
    }


def _human(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def _load(env: dict[str, Any]) -> str:
    load = env.get("load_average")  # absent in reports written before it was recorded
    return "-" if not load else f"{load[0]:.1f}"


def _quality_key(report: dict[str, Any]) -> str:
    """``r2`` for a regression model's report, else ``accuracy`` (None without labels)."""
    entries = [e for per_bs in report["contestants"].values() for e in per_bs.values()]
    return "r2" if any(e.get("r2") is not None for e in entries) else "accuracy"


def _quality_text(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if key == "r2" else f"{value:.2%}"


def bench_table(report: dict[str, Any]) -> Any:
    """A rich ``Table`` of a :func:`benchmark` report (the CLI prints it)."""
    from rich.table import Table

    from dlopt.report._tables import size_text

    env = report["environment"]
    first = next(iter(next(iter(report["contestants"].values())).values()))
    table = Table(
        title=f"dlopt bench: {env['cpu']['model']}, {report['settings']['threads']} thread(s), "
              f"load average {_load(env)}, baseline {report['baseline']}",
        caption=f"params {_human(first['params'])}, MACs/sample {_human(first['macs'])}; "
                f"verdict: median ratio outside the noise band (IQR-based, >= "
                f"{report['settings']['noise_floor']:.0%})",
    )
    quality = _quality_key(report)
    cols = ("contestant", "batch", "p50 ms", "p95 ms", "p99 ms", "IQR ms", "samples/s",
            "peak MB", "size", quality, "speedup", "verdict")
    for col in cols:
        table.add_column(col, justify="left" if col in ("contestant", "verdict") else "right", no_wrap=True)
    for name, per_bs in report["contestants"].items():
        for bs, e in per_bs.items():
            acc = _quality_text(quality, e.get(quality))
            table.add_row(
                name, bs, f"{e['p50_ms']:.3f}", f"{e['p95_ms']:.3f}", f"{e['p99_ms']:.3f}",
                f"{e['iqr_ms']:.3f}", f"{e['throughput']:.0f}", f"{e['peak_mb']:.1f}",
                size_text(e["size_bytes"]), acc, f"{e['speedup']:.2f}x", e["verdict"],
            )
    return table
