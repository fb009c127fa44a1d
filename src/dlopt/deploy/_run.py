"""Run-directory forms: ``export_run`` and ``bench_run`` (what ``dlopt export``/``bench`` call).

The one adapter between a training run (``dlopt.train.load``: model, config, dataset info,
preprocessor) and the plain-input functional core (``export_onnx``, ``benchmark``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dlopt.deploy._bench import Contestant, benchmark_checked, sample_rows
from dlopt.deploy._export import MIN_SAMPLES, ExportReport, export_onnx
from dlopt.deploy._runtime import OnnxModel
from dlopt.errors import ConfigError, DataError, first_line

__all__ = ["export_run", "bench_run", "run_metadata"]

log = logging.getLogger(__name__)


def _test_split(data_cfg: Any, samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The run's own test split, preprocessed as in training (first ``samples`` rows)."""
    from dlopt.data import load_data

    test = load_data(data_cfg).test
    x, y = test.x.numpy(), test.y.numpy()
    return (x, y) if samples is None else (x[:samples], y[:samples])


def run_metadata(loaded: Any) -> dict[str, Any]:
    """What an exported file records about the run it came from: its zoo model and options or,
    for a user's nn.Module, ``{"name": "custom", "class": "package.module.Class"}``; its data
    config, or ``{}`` for in-memory data (no dataset to take test samples from)."""
    return {
        "task": loaded.info.task,
        "class_names": list(loaded.info.class_names),
        "preprocess": loaded.preprocessor,
        "source_run": str(Path(loaded.run_dir).resolve()) if loaded.run_dir else "",
        "model": _model_record(loaded),
        "dataset": _dataset_record(loaded),
    }


def _model_record(loaded: Any) -> dict[str, Any]:
    from dlopt.config import CUSTOM_MODEL
    from dlopt.train.api import model_class
    from dlopt.train.loaded import trained_custom_model

    cfg = loaded.config
    if cfg.model.name == CUSTOM_MODEL or trained_custom_model(loaded.run_dir):
        return {"name": CUSTOM_MODEL, "class": model_class(loaded.model)}
    return {"name": cfg.model.name, "options": cfg.model.options()}


def _dataset_record(loaded: Any) -> dict[str, Any]:
    from dlopt.config import IN_MEMORY_DATA

    data = loaded.config.data
    # older in-memory runs saved the default data.name; their dataset info holds another
    if data.name == IN_MEMORY_DATA or loaded.info.name != data.name:
        return {}
    return data.model_dump(mode="json")


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, *, exporter: str = "dynamo",
               samples: int = MIN_SAMPLES, atol: float = 1e-4, min_top1: float = 0.995) -> ExportReport:
    """Export a training run's model to ``out`` after a parity check on its test split."""
    from dlopt.train import load

    loaded = load(run_dir)
    x, _ = _test_split(loaded.config.data, samples)
    import torch

    return export_onnx(loaded.model, torch.from_numpy(x[:2]), out, metadata=run_metadata(loaded),
                       check_inputs=x, exporter=exporter, atol=atol, min_top1=min_top1,
                       samples=samples)


def _onnx_inputs(model: OnnxModel, samples: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Test data named in a loaded ``OnnxModel``'s metadata, else random inputs of its shape
    (no labels)."""
    meta, path = model.metadata, model.path
    if not meta.dataset:
        log.warning("%s names no dataset: timing random inputs, accuracy not measured", path)
    else:
        from dlopt.config import DataConfig

        try:
            return sample_rows(*_test_split(DataConfig.model_validate(meta.dataset), None), samples)
        except DataError as exc:  # e.g. a csv: path relative to where the run was trained
            log.warning("%s: its dataset cannot be read here (%s): timing random inputs, accuracy not "
                        "measured", path, first_line(exc))
    rng = np.random.default_rng(0)
    return rng.standard_normal((samples or MIN_SAMPLES, *meta.input_shape)).astype(np.float32), None


def _check_files(shape: tuple[int, ...], source: str, **files: str | os.PathLike | None) -> None:
    """Each given ``--onnx``/``--int8`` file loads and takes ``source``'s inputs: one line now,
    exit 2, instead of a failed worker after the other contestants were timed. The only check
    of these files: ``benchmark_checked`` is told the shape."""
    for option, path in files.items():
        if path is None:
            continue
        got = tuple(OnnxModel.load(path).input_shape)
        if got != shape:
            raise ConfigError(f"--{option} {path} takes inputs of shape {got} but {source} takes {shape}; "
                              f"allowed: a model of the same inputs (an export of {source})")


def bench_run(
    model_or_run: str | os.PathLike,
    *,
    onnx: str | os.PathLike | None = None,
    int8: str | os.PathLike | None = None,
    compiled: bool = False,
    batch_sizes: Sequence[int] = (1, 8, 64),
    threads: int = 1,
    samples: int | None = None,
    baseline: str | None = None,
    min_runs: int = 30,
    min_seconds: float = 1.0,
    exporter: str = "dynamo",
    rounds: int = 1,
) -> dict[str, Any]:
    """Benchmark a run directory (PyTorch eager, ``torch.compile`` when ``compiled``, ONNX
    Runtime FP32 exported on the fly unless ``onnx`` is given) or an ``.onnx`` file, plus
    the quantized ``int8`` file when given (by default a run directory's own
    ``model.int8.onnx``, what ``dlopt quantize`` delivers); ``rounds`` as in :func:`benchmark`."""
    source = Path(model_or_run)
    if not source.exists():
        raise ConfigError(f"bench: {source} not found; allowed: a run directory or an .onnx file")
    with tempfile.TemporaryDirectory(prefix="dlopt-bench-export-") as tmp:
        if source.is_dir():
            from dlopt.train import load
            from dlopt.train.loaded import delivered_onnx

            loaded = load(source)
            int8 = delivered_onnx(source) if int8 is None else int8  # a quantize run's own INT8 file
            shape = tuple(loaded.info.input_shape)  # an export of the run takes it too
            _check_files(shape, str(source), onnx=onnx, int8=int8)
            x, y = sample_rows(*_test_split(loaded.config.data, None), samples)
            run = {"run": str(source.resolve())}
            contestants = [Contestant.pytorch(run)]
            if compiled:
                contestants.append(Contestant.pytorch(run, compiled=True))
            if onnx is None:
                onnx = Path(tmp) / "model.onnx"
                export_run(source, onnx, exporter=exporter)
            info = {"source": str(source), "name": loaded.config.model.name,
                    "dataset": loaded.config.data.name}
        else:
            model = OnnxModel.load(source)
            shape = tuple(model.input_shape)
            _check_files(shape, str(source), int8=int8)
            x, y = _onnx_inputs(model, samples)
            onnx, contestants = source, []
            info = {"source": str(source)}
        contestants.append(Contestant.onnx(onnx))
        if int8 is not None:
            contestants.append(Contestant.onnx(int8, int8=True))
        return benchmark_checked(contestants, x, y, shape, batch_sizes=batch_sizes, threads=threads,
                                 baseline=baseline, min_runs=min_runs, min_seconds=min_seconds, model=info,
                                 rounds=rounds)
