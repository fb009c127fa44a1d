"""``dlopt train``, ``dlopt eval`` and ``dlopt predict``."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

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
    inputs: list[Path] = typer.Argument(..., help="image files or folders of images, .npy arrays or CSV "
                                                  "files of rows (one kind)"),
    top: int = typer.Option(3, "--top", min=1, help="how many class probabilities to print"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | mps | auto"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Predict the class (and probabilities) of raw inputs, applying the saved preprocessing.
    One file: a line per sample, numbered; several files or a folder: each line names its file."""
    setup_logging(verbose)
    _set_threads(threads)
    from dlopt.train.inputs_raw import input_files, is_image_file

    files = input_files(inputs)  # every path checked before the model loads
    named = len(files) > 1 or any(p.is_dir() for p in inputs)
    read, predict_raw, names = _predictor(run, device, threads)
    images = is_image_file(files[0])
    # every input is read and predicted before the first line: a bad file in a later batch
    # fails the command with nothing printed; only the text is kept, not the inputs
    texts = []
    for part, x in _chunks(files, read, images=images):
        pred, proba = _predicted(part, x, predict_raw)
        texts.append("\n".join(f"{_sample_label(part, i, named=named, images=images)}: "
                                f"{_prediction(p, None if proba is None else proba[i], names, top)}"
                                for i, p in enumerate(pred)))
    for text in texts:
        typer.echo(text)


_Predictor = tuple[Callable[[Path], Any], Callable[[Any], Any], list[str]]  # read, predict_raw, class names


def _predictor(run: Path, device: str, threads: Optional[int]) -> _Predictor:
    """``(read, predict_raw, class_names)`` of a run, a checkpoint or an exported ONNX file."""
    from dlopt.train.inputs_raw import read_raw_input

    if run.suffix.lower() == ".onnx":  # an exported model (dlopt export): ONNX Runtime
        from dlopt.deploy import OnnxModel

        m = OnnxModel.load(run, threads=threads)
        shape, pre, imputes, predict_raw, names = (m.metadata.raw_shape, m.preprocessor, m.imputes,
                                                  m.predict_raw, m.metadata.class_names)
    else:
        from dlopt.train import load

        loaded = load(run, device=device)
        shape, pre, imputes, predict_raw, names = (loaded.info.input_shape, loaded.preprocessor, loaded.imputes,
                                                  loaded.predict, loaded.info.class_names)
    read = functools.partial(read_raw_input, input_shape=shape, categories=_categories(pre),
                             columns=_columns(pre), missing=imputes)
    return read, predict_raw, list(names)


_IMAGES_PER_CALL = 256  # a folder's images are predicted in batches of this many: bounded memory


def _chunks(files: list[Path], read: Callable[[Path], Any], *, images: bool) -> Iterator[tuple[list[Path], Any]]:
    """``(files, raw inputs)`` to predict at once: images in batches, other files one by one
    (their sample counts are known only once predicted)."""
    import numpy as np

    step = _IMAGES_PER_CALL if images else 1
    for i in range(0, len(files), step):
        part = files[i:i + step]
        yield part, np.concatenate([read(f) for f in part]) if images else read(part[0])


def _predicted(part: list[Path], x: Any, predict_raw: Callable[[Any], Any]) -> Any:
    """``predict_raw(x)``, its error naming the input file (a batch of images: its first and
    last; an image that reads well has the model's shape, so its batch rarely fails here)."""
    from dlopt.errors import DloptError

    try:
        return predict_raw(x)
    except DloptError as exc:
        where = str(part[0]) if len(part) == 1 else f"{part[0]} .. {part[-1]} ({len(part)} images)"
        raise type(exc)(f"{where}: {exc}") from None


def _sample_label(part: list[Path], i: int, *, named: bool, images: bool) -> str:
    """Sample ``i`` of ``part``: its number for one input file, else its image file or ``FILE[i]``."""
    if not named:
        return str(i)
    return str(part[i]) if images else f"{part[0]}[{i}]"


def _prediction(p: Any, proba: Any, names: list[str], top: int) -> str:
    """``class NAME  (top probabilities)``, or the value of a regression."""
    if proba is None:
        return f"{float(p):.6g}"
    order = proba.argsort()[::-1][:top]
    probs = "  ".join(f"{names[j] if j < len(names) else j}: {proba[j]:.4f}" for j in order)
    label = names[int(p)] if int(p) < len(names) else str(int(p))
    return f"class {label}  ({probs})"
