"""``dlopt train``, ``dlopt eval`` and ``dlopt predict``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional

import typer

from dlopt.cli._app import command, setup_logging


def _common_overrides(overrides: list[str], device: Optional[str], threads: Optional[int],
                      cv: Optional[int] = None) -> list[str]:
    out = list(overrides)
    if device is not None:
        out.append(f"train.device={device}")
    if threads is not None:
        out.append(f"train.threads={threads}")
    if cv is not None:
        out.append(f"train.cv={cv}")
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) else "nan"
    return "n/a" if v is None else str(v)


def _set_threads(threads: Optional[int]) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _categories(preprocessor: Any) -> dict[int, list[str]]:
    """The text columns a run's CSV inputs hold (none without preprocessing)."""
    return preprocessor.categories if preprocessor is not None else {}


def _columns(preprocessor: Any) -> list[str] | None:
    """The run's CSV feature names (None when not saved): a CSV header is matched to them."""
    return getattr(preprocessor, "feature_names", None) or None


@command("train")
def train(
    config: Path = typer.Argument(..., help="run config (YAML), e.g. examples/mnist-fast.yaml"),
    overrides: list[str] = typer.Option([], "--set", help="override a key: train.epochs=2"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="output directory (default runs/<name>)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --run-dir from checkpoints/last"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty run directory"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda | mps | auto"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch"),
    cv: Optional[int] = typer.Option(None, "--cv", min=2, help="k-fold cross-validation with K folds"),
    nproc: Optional[int] = typer.Option(None, "--nproc", min=1,
                                        help="train in N processes (DDP) launched with torchrun"),
    max_restarts: int = typer.Option(0, "--max-restarts", min=0,
                                     help="with --nproc: restart the group from its last checkpoint up to K times"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a model from a config; writes config.yaml, metrics.jsonl, checkpoints/, summary.json."""
    setup_logging(verbose)
    from dlopt.config import load_config
    from dlopt.train import train_run

    all_overrides = _common_overrides(overrides, device, threads, cv)
    cfg = load_config(config, all_overrides)  # a bad config fails here, before any process starts
    out = run_dir or Path("runs") / cfg.name
    if nproc is not None or max_restarts:
        _launch(cfg, config, all_overrides, out, nproc=nproc, max_restarts=max_restarts, resume=resume,
                overwrite=overwrite, verbose=verbose)
        return
    from dlopt.train.distributed import is_main_process

    result = train_run(cfg, run_dir=out, resume=resume, overwrite=overwrite)
    if not is_main_process():  # under torchrun only rank 0 reports
        return
    s = result.summary
    if s.get("cv"):
        for key, st in s["cv_test"].items():
            typer.echo(f"test {key}: {_fmt(st['mean'])} ± {_fmt(st['std'])} (population std) over {s['cv']} folds")
    else:
        typer.echo("test " + "  ".join(f"{k} {_fmt(v)}" for k, v in s["test"].items()))
    best = "" if s.get("best_epoch") is None else f", best epoch {s['best_epoch']}"  # none across cv folds
    typer.echo(f"run: {result.run_dir}  ({s['epochs']} epochs, {s['train_seconds']:.1f}s{best})")


def _launch(cfg: Any, config: Path, overrides: list[str], out: Path, *, nproc: Optional[int],
            max_restarts: int, resume: bool, overwrite: bool, verbose: bool) -> None:
    """``dlopt train --nproc N``: check here, then run ``-m dlopt train`` under torchrun."""
    from dlopt.errors import ConfigError
    from dlopt.train import distributed, rundir
    from dlopt.train.device import select_device

    if nproc is None:
        raise ConfigError("--max-restarts needs --nproc N (the processes torchrun restarts)")
    if not distributed.is_main_process() or "TORCHELASTIC_RUN_ID" in os.environ:
        raise ConfigError("--nproc: already running under torchrun; drop --nproc")
    world = distributed.World(world_size=nproc)
    t = cfg.train
    distributed.check_supported(world, cv=t.cv, unfreeze_at_epoch=t.transfer.unfreeze_at_epoch)
    world.local_batch(t.batch_size, t.distributed.batch)  # a batch the ranks cannot share fails now
    # a device the processes cannot use would fail in each of them, once per restart
    distributed.check_devices(select_device(t.device), t.distributed.backend, local_processes=nproc)
    out = rundir.prepare_run_dir(out, resume=resume, overwrite=overwrite).resolve()
    args = ["train", str(config.resolve()), "--run-dir", str(out)]
    args += [a for o in overrides for a in ("--set", o)]
    args += ["--resume"] * resume + ["--overwrite"] * overwrite + ["--verbose"] * verbose
    distributed.launch(args, nproc=nproc, max_restarts=max_restarts)


@command("eval")
def eval_(
    run: Path = typer.Argument(..., help="run directory or checkpoint directory"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset name (default: the run's test split)"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | mps | auto"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Evaluate a trained run on its test split (or another dataset's)."""
    setup_logging(verbose)
    _set_threads(threads)
    from dlopt.train import evaluate
    from dlopt.train.loaded import delivered_onnx

    metrics = evaluate(run, data, device=device)
    int8 = delivered_onnx(run)
    if int8 is not None:  # what a quantize step delivers, not the FP32 weights beside it
        typer.echo(f"scored {int8} (INT8, ONNX Runtime)")
    for k, v in metrics.items():
        typer.echo(f"{k} {_fmt(v)}")


@command("predict")
def predict(
    run: Path = typer.Argument(..., help="run directory, checkpoint directory or exported .onnx file"),
    input: Path = typer.Argument(..., help="an image file, a .npy array or a CSV file of rows"),
    top: int = typer.Option(3, "--top", min=1, help="how many class probabilities to print"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | mps | auto"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Predict the class (and probabilities) of raw inputs, applying the saved preprocessing."""
    setup_logging(verbose)
    _set_threads(threads)
    from dlopt.train import load
    from dlopt.train.inputs_raw import read_raw_input

    if run.suffix.lower() == ".onnx":  # an exported model (dlopt export): ONNX Runtime
        from dlopt.deploy import OnnxModel

        onnx_model = OnnxModel.load(run, threads=threads)
        x = read_raw_input(input, onnx_model.metadata.raw_shape, categories=_categories(onnx_model.preprocessor),
                           columns=_columns(onnx_model.preprocessor), missing=onnx_model.imputes)
        (pred, proba), names = onnx_model.predict_raw(x), onnx_model.metadata.class_names
    else:
        loaded = load(run, device=device)
        x = read_raw_input(input, loaded.info.input_shape, categories=_categories(loaded.preprocessor),
                           columns=_columns(loaded.preprocessor), missing=loaded.imputes)
        (pred, proba), names = loaded.predict(x), loaded.info.class_names
    for i, p in enumerate(pred):
        if proba is None:
            typer.echo(f"{i}: {float(p):.6g}")
            continue
        order = proba[i].argsort()[::-1][:top]
        probs = "  ".join(f"{names[j] if j < len(names) else j}: {proba[i][j]:.4f}" for j in order)
        label = names[int(p)] if int(p) < len(names) else str(int(p))
        typer.echo(f"{i}: class {label}  ({probs})")
