"""One benchmark contestant in its own process: ``python -m dlopt.deploy._bench_worker SPEC.json``.

Prints one JSON object on stdout. The parent sets OMP/MKL thread variables before this
process starts; here torch and ONNX Runtime get the same fixed thread count.

Per batch size: warm-up (>= 3 runs and >= ``warmup_seconds``), then timed runs until both
``min_runs`` and ``min_seconds`` are reached (capped by ``max_seconds``). Peak memory is the
process's RSS high-water mark during that batch size minus the RSS before the model loaded
(the mark is reset through /proc/self/clear_refs where Linux allows it).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dlopt.deploy._stats import latency_stats, weight_elements
from dlopt.registry import Registry
from dlopt.train import class_probabilities

log = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], Any]


@dataclass
class Loaded:
    """A contestant ready to time: ``predict`` maps a float32 batch to outputs."""

    predict: Predict
    to_numpy: Callable[[Any], np.ndarray]
    params: int | None
    macs: int | None
    size_bytes: int | None


RUNNERS: Registry[Callable[..., Loaded]] = Registry("benchmark runner")


# ------------------------------------------------------------------------------ memory
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # "5": reset the peak RSS (VmHWM)
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    kb = _status_kb("VmHWM")
    return kb / 1024 if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- runners
def _torch_model(source: dict[str, Any]) -> tuple[Any, tuple[int, ...], int | None]:
    """(eval model, input shape, bytes on disk) from a run directory or a zoo spec."""
    if "run" in source:
        from dlopt.train import load

        loaded = load(source["run"])
        weights = Path(source["run"]) / "model.safetensors"
        size = weights.stat().st_size if weights.is_file() else None
        return loaded.model.eval(), tuple(loaded.info.input_shape), size
    spec = source["zoo"]
    from safetensors.torch import load_file

    from dlopt.models import create_model

    model = create_model(spec["name"], input_shape=tuple(spec["input_shape"]),
                         num_classes=int(spec["num_classes"]), **spec.get("options", {}))
    model.load_state_dict(load_file(spec["weights"]))
    return model.eval(), tuple(spec["input_shape"]), Path(spec["weights"]).stat().st_size


def _torch_loaded(source: dict[str, Any], threads: int, compile_model: bool) -> Loaded:
    import torch

    from dlopt.models import summary
    from dlopt.train.device import retain_host_memory

    torch.set_num_threads(threads)
    # eager as dlopt runs it: without this each forward page-faults its activations back in
    # (ResNet-14, batch 64, 1 thread: p50 72-74 -> 49-62 ms); ONNX Runtime has its own arena
    retain_host_memory()
    model, shape, size = _torch_model(source)
    stats = summary(model, shape)
    fn = torch.compile(model) if compile_model else model

    def predict(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return fn(torch.from_numpy(x))

    return Loaded(predict, lambda out: out.float().numpy(), stats.params, stats.macs,
                  size if size is not None else stats.size_bytes)


@RUNNERS.register("pytorch")
def _pytorch(source: dict[str, Any], threads: int) -> Loaded:
    return _torch_loaded(source, threads, compile_model=False)


@RUNNERS.register("compile")
def _compile(source: dict[str, Any], threads: int) -> Loaded:
    return _torch_loaded(source, threads, compile_model=True)


def onnx_params(path: str | os.PathLike) -> int:
    """Weight elements of an ONNX file (:func:`dlopt.deploy._stats.weight_elements` says which)."""
    import onnx

    return weight_elements(onnx.load(str(path), load_external_data=False).graph)


@RUNNERS.register("onnxruntime")
def _onnxruntime(source: dict[str, Any], threads: int) -> Loaded:
    import onnx

    from dlopt.deploy._runtime import OnnxModel, check_external_data

    path = Path(source["onnx"])
    runner = OnnxModel.load(path, threads=threads)
    side = check_external_data(onnx.load(str(path), load_external_data=False), path)
    size = path.stat().st_size + sum((path.resolve().parent / s).stat().st_size for s in side)
    return Loaded(runner.run, np.asarray, onnx_params(path), runner.metadata.macs, size)


# ------------------------------------------------------------------------------ timing
def _batch(x: np.ndarray, size: int) -> np.ndarray:
    reps = -(-size // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:size] if reps > 1 else x[:size])


def time_batches(loaded: Loaded, x: np.ndarray, spec: dict[str, Any], rss_base: float) -> dict[str, Any]:
    """Latency statistics and peak memory per batch size."""
    out = {}
    for bs in spec["batch_sizes"]:
        batch = _batch(x, int(bs))
        reset = _reset_peak()
        warm_end, n = time.perf_counter() + spec["warmup_seconds"], 0
        while n < 3 or time.perf_counter() < warm_end:
            loaded.predict(batch)
            n += 1
        times: list[float] = []
        start = time.perf_counter()
        while True:
            elapsed = time.perf_counter() - start
            enough = len(times) >= spec["min_runs"] and elapsed >= spec["min_seconds"]
            if enough or (elapsed >= spec["max_seconds"] and len(times) >= 3):
                break
            t0 = time.perf_counter_ns()
            loaded.predict(batch)
            times.append((time.perf_counter_ns() - t0) / 1e6)
        entry = latency_stats(times, int(bs))
        entry["peak_mb"] = round(max(_peak_mb() - rss_base, 0.0), 2)
        entry["peak_reset"] = reset
        out[str(bs)] = entry
    return out


def _outputs(loaded: Loaded, x: np.ndarray, batch: int) -> np.ndarray:
    """The model's outputs on all of ``x``, one row per sample."""
    outs = [loaded.to_numpy(loaded.predict(np.ascontiguousarray(x[i:i + batch])))
            for i in range(0, len(x), batch)]
    return np.concatenate(outs).reshape(len(x), -1)


def _r2(y: np.ndarray, pred: np.ndarray) -> float | None:
    """The coefficient of determination (as training's test ``r2``); None where undefined."""
    y, pred = y.astype(np.float64), pred.astype(np.float64)
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / total if len(y) > 1 and total > 0 else None


def quality(loaded: Loaded, x: np.ndarray, y: np.ndarray | None, batch: int) -> dict[str, float | None]:
    """``accuracy`` (class-id labels ``y``: top-1 of the probabilities as training scores them,
    ``class_probabilities``) and ``r2`` (float targets ``y``: regression, scored on the first
    output as training does) on all of ``x``; None where it does not apply."""
    out: dict[str, float | None] = {"accuracy": None, "r2": None}
    if y is None or len(y) == 0:
        return out
    scores = _outputs(loaded, x, batch)
    if np.issubdtype(y.dtype, np.floating):
        out["r2"] = _r2(y.reshape(len(y), -1)[:, 0], scores[:, 0])
    else:
        out["accuracy"] = float((class_probabilities(scores).argmax(axis=1) == y).mean())
    return out


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the contestant named in ``spec``, time it and measure it."""
    threads = int(spec["threads"])
    with np.load(spec["inputs"], allow_pickle=False) as data:
        x = data["x"].astype(np.float32)
        y = data["y"] if "y" in data.files else None
    rss_base = _rss_mb()
    t0 = time.perf_counter()
    loaded = RUNNERS.get(spec["runner"]).factory(spec["source"], threads)
    load_s = time.perf_counter() - t0
    batches = time_batches(loaded, x, spec, rss_base)
    scores = quality(loaded, x, y, max(int(b) for b in spec["batch_sizes"]))
    return {
        "runner": spec["runner"], "params": loaded.params, "macs": loaded.macs,
        "size_bytes": loaded.size_bytes, **scores, "load_seconds": load_s,
        "rss_mb_base": rss_base, "batches": batches,
    }


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    spec = json.loads(Path(argv[0]).read_text())
    print(json.dumps(run_spec(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
