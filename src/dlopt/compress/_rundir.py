"""Inputs and outputs of a compression step, on the training engine's run-directory contract.

A step reads a *source* (a run directory: model, config, data, preprocessing), builds a
*candidate* run directory in ``OUT/.candidate`` (by fine-tuning through ``dlopt.train`` or
by writing the model directly), then :func:`finalize` lays out ``OUT``: the candidate when
the guard accepts it, else the source's model with the candidate moved to ``OUT/rejected``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from torch import nn

from dlopt._files import empty_dir, remove_path
from dlopt.compress._types import REJECTED
from dlopt.config import RunConfig, config_to_dict, dump_config, load_config, parse_config
from dlopt.errors import ConfigError, ModelError
from dlopt.train import checkpoint as io
from dlopt.train import rundir
from dlopt.train.loaded import trained_custom_model

__all__ = ["Source", "open_source", "check_zoo_run", "finetune", "write_model_dir", "prepare_out", "finalize",
           "clean_on_failure", "step_out", "ARCH", "ONNX", "INT8_ONNX", "CANDIDATE", "REJECTED", "INIT_WEIGHTS"]

log = logging.getLogger(__name__)

ARCH = "arch.json"
ONNX = "model.onnx"
INT8_ONNX = "model.int8.onnx"
CANDIDATE = ".candidate"
_WORK = ".work"
INIT_WEIGHTS = "init.safetensors"  # the weights a fine-tuning run started from
# files that make a run directory's model (copied when the source is kept)
_MODEL_FILES = (rundir.CONFIG, rundir.WEIGHTS, rundir.SUMMARY, ARCH, "preprocess.json", "preprocess.npz")
# summary fields of a training run that an untrained derived model does not share
_SOURCE_TRAINING = ("best_epoch", "monitor", "stop_reason", "test_seconds")
# summary fields of a fine-tuning (QAT, low-bit) that a model written from its result shares
_TRAINED = ("epochs", "steps", "train_seconds")


@dataclass
class Source:
    """A step's input: the loaded run (``loaded.model``, ``loaded.config``...) and its data."""

    run_dir: Path
    loaded: Any
    bundle: Any
    guard_split: dict[str, Any] = field(default_factory=dict)  # the split the guard judges on

    @property
    def config(self) -> RunConfig:
        return self.loaded.config

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    def metadata(self) -> dict[str, Any]:
        """ONNX metadata for files exported from this run (deploy's run metadata)."""
        from dlopt.deploy._run import run_metadata

        return run_metadata(self.loaded)


def open_source(run_dir: str | Path) -> Source:
    """Load the run at ``run_dir`` and its data (the run's own data config and splits; a run
    without a validation split gets a held-out guard split from train, see ``_holdout``)."""
    from dlopt.compress._holdout import with_guard_split
    from dlopt.data import load_data
    from dlopt.train import load

    d = Path(run_dir)
    if not (d / rundir.WEIGHTS).is_file():
        raise ConfigError(f"{d} is not a finished run directory (no {rundir.WEIGHTS})")
    check_zoo_run(d)
    loaded = load(d)
    bundle, guard = with_guard_split(load_data(loaded.config.data), seed=loaded.config.data.seed)
    return Source(run_dir=d, loaded=loaded, bundle=bundle, guard_split=guard)


def check_zoo_run(d: Path) -> None:
    """ModelError when the run at ``d`` trained a user's nn.Module: a step rebuilds its models
    from a run's files (config + arch.json + weights), which only a zoo model allows."""
    if trained_custom_model(d):
        raise ModelError(f"{d} was trained on a custom nn.Module, which prune, distill and quantize cannot rebuild "
                         f"from the run's files; allowed: a zoo-model run, or the module exported to ONNX "
                         f"(dlopt.deploy.export_onnx) and `dlopt quantize FILE.onnx --data DATA`")


def prepare_out(out_dir: str | Path, *, overwrite: bool, inputs: Sequence[str | Path] = ()) -> Path:
    """Create the output run directory (a non-empty one needs ``overwrite``). One that is or
    holds one of the step's ``inputs`` is refused first: ``overwrite`` would delete the input."""
    out = Path(out_dir).resolve()
    for given in inputs:
        path = Path(given).resolve()
        if path == out or out in path.parents:
            raise ConfigError(f"--out {out_dir} {'is' if path == out else 'holds'} the input {given}, which "
                              f"--overwrite would delete; allowed: an output directory outside the input")
    return rundir.prepare_run_dir(out_dir, overwrite=overwrite, resumable=False)


@contextlib.contextmanager
def clean_on_failure(out: Path, *, created: Path | None = None) -> Iterator[None]:
    """Empty ``out`` when the step fails inside (scratch space, unfinished candidate, copied
    files): everything in it is the step's own (``prepare_out`` found it empty or was told to
    overwrite), and a retry then needs no ``--overwrite``. ``created``: the topmost folder the
    step made for ``out`` (``out`` or a parent), removed too: a refused step leaves no trace."""
    try:
        yield
    except BaseException:
        empty_dir(out, ignore_errors=True)
        if created is not None:
            _remove_made(out, created)
        raise


@contextlib.contextmanager
def step_out(out_dir: str | Path, *, overwrite: bool, inputs: Sequence[str | Path] = ()) -> Iterator[Path]:
    """:func:`prepare_out` then :func:`clean_on_failure` around the step: yields ``OUT``."""
    made = _first_missing(Path(out_dir))
    out = prepare_out(out_dir, overwrite=overwrite, inputs=inputs)
    with clean_on_failure(out, created=made):
        yield out


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path`` that does not exist yet (None: ``path`` exists)."""
    missing = None
    for p in (path, *path.parents):
        if p.exists():
            break
        missing = p
    return missing


def _remove_made(out: Path, top: Path) -> None:
    """Remove ``out`` and its parents up to ``top``, each only if empty."""
    for p in (out, *out.parents):
        try:
            p.rmdir()
        except OSError:  # not empty (another writer) or already gone: leave it
            return
        if p == top:
            return


def work_dir(out: Path) -> Path:
    """Scratch space inside ``out`` (exports of the source, weights handed to fine-tuning)."""
    d = out / _WORK
    d.mkdir(exist_ok=True)
    return d


def derived_config(cfg: RunConfig, model: nn.Module, *, name: str, **train: Any) -> RunConfig:
    """``cfg`` with the model's current widths as options and ``train`` fields replaced
    (dotted keys allowed, e.g. ``{"optim.lr": 1e-3}``)."""
    from dlopt.models import arch_options

    data = config_to_dict(cfg)
    data["name"] = name
    data["model"].update(arch_options(model))
    for key, value in train.items():
        node = data["train"]
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return parse_config(data)


def rewound_lr(src: Source, lr: float | None) -> float:
    """``lr``, or the source run's own (peak) learning rate when None: fine-tuning a pruned
    model at its training rate, annealed, recovers more than a small fixed rate (learning-rate
    rewinding, Renda et al. 2020; measured here: ResNet-14 on Fashion-MNIST, 56 % of MACs
    removed, 2 epochs: 1.5 pt drop at the source's 4e-3 vs 3.3 pt at 1e-3)."""
    return float(src.config.train.optim.lr) if lr is None else float(lr)


def finetune(src: Source, model: nn.Module, run_dir: Path, *, epochs: int, lr: float, name: str,
             callbacks: Sequence[Any] = ()) -> Any:
    """Fine-tune ``model`` (a zoo model, possibly pruned) on the source's data through
    ``dlopt.train.train_run``; the run rebuilds it from config + ``arch.json`` + weights."""
    from dlopt.train import train_run

    weights = work_dir(run_dir.parent) / f"{name}.init.safetensors"
    io.atomic_write(weights, io.weights_bytes(model))
    cfg = derived_config(src.config, model, name=name, epochs=epochs, **{
        "optim.lr": lr, "schedule.name": "cosine", "progress": False,
        "transfer.init_from": str(weights.resolve()), "transfer.new_head": False,
    })
    result = train_run(cfg, run_dir=run_dir, callbacks=callbacks, overwrite=True, bundle=src.bundle)
    write_arch(run_dir, model)
    return result


def train_module(src: Source, module: nn.Module, run_dir: Path, *, epochs: int, lr: float, name: str,
                 callbacks: Sequence[Any] = ()) -> Any:
    """Fine-tune a modified module (fake-quant wrappers, not rebuildable from the zoo) through
    ``dlopt.train.train_run``; the caller writes the deployable model afterwards."""
    from dlopt.train import train_run

    cfg = derived_config(src.config, module, name=name, epochs=epochs, **{
        "optim.lr": lr, "schedule.name": "cosine", "progress": False, "transfer.init_from": None,
    })
    return train_run(cfg, run_dir=run_dir, callbacks=callbacks, overwrite=True, model=module, bundle=src.bundle)


def write_arch(d: Path, model: nn.Module) -> None:
    """``arch.json``: the widths that rebuild ``model`` (empty models write nothing)."""
    from dlopt.models import arch_options

    arch = arch_options(model)
    if arch:
        rundir.write_json(d / ARCH, arch)


def write_model_dir(d: Path, src: Source, model: nn.Module, *, name: str,
                    measured: dict[str, Any] | None = None, trained: dict[str, Any] | None = None) -> Path:
    """A run directory for ``model`` without its own training run: config (source + widths),
    weights, preprocessing, ``arch.json`` and a summary copied from the source with new figures
    (the source's training fields under ``source_training``). ``trained``: the summary of the
    fine-tuning that made ``model`` (QAT, low-bit), whose epochs, steps and seconds are recorded."""
    d.mkdir(parents=True, exist_ok=True)
    cfg = derived_config(src.config, model, name=name, epochs=src.config.train.epochs)
    dump_config(cfg, d / rundir.CONFIG)
    io.atomic_write(d / rundir.WEIGHTS, io.weights_bytes(model))
    for f in ("preprocess.json", "preprocess.npz"):
        if (src.run_dir / f).is_file():
            shutil.copy2(src.run_dir / f, d / f)
    write_arch(d, model)
    summary = dict(rundir.read_json(src.run_dir / rundir.SUMMARY))
    # figures of the source's training (its best epoch, its test predictions) describe the
    # source model, not this untrained one: kept under a name that says so
    summary["source_training"] = {k: summary.pop(k, None) for k in _SOURCE_TRAINING}
    summary.pop("confusion_matrix", None)
    summary.update(name=name, epochs=0, steps=0, train_seconds=0.0, custom_model=False)
    summary.update({k: trained[k] for k in _TRAINED if k in (trained or {})})
    # the source's val/test blocks (loss, f1...) describe the source model, not this one
    summary.update(val={}, test={})
    if measured:
        _describe(summary, measured)
    rundir.write_json(d / rundir.SUMMARY, summary)
    return d


def _describe(summary: dict[str, Any], measured: dict[str, Any], guard_split: dict[str, Any] | None = None) -> None:
    """Put the figures ``measured`` on a model (the same ones ``compression.after`` reports)
    into its ``summary``: val/test guard metric (accuracy, or r2), params, MACs, size, and the
    test predictions' confusion matrix."""
    metric = measured.get("metric", "accuracy")
    summary.update({k: measured[k] for k in ("params", "macs", "size_bytes", "confusion_matrix") if k in measured})
    summary["val"] = {**(summary.get("val") or {}), metric: measured.get(f"val_{metric}")}
    summary["test"] = {**(summary.get("test") or {}), metric: measured.get(f"test_{metric}")}
    if guard_split and guard_split.get("split") != "val":
        summary["val"]["split"] = guard_split["split"]  # carved from train: say so where it is read


def _describe_candidate(cand: Path, after: dict[str, Any] | None, guard_split: dict[str, Any] | None,
                        precision: str | None) -> None:
    """The candidate's ``summary.json`` with the candidate's own measured figures (a written,
    untrained model dir otherwise carries none, and an INT8 file is not its FP32 weights) and,
    given, the ``precision`` of the model it delivers (else the source's, copied)."""
    path = cand / rundir.SUMMARY
    if (after or precision) and path.is_file():
        summary = rundir.read_json(path)
        if after:
            _describe(summary, after, guard_split)
        if precision:
            summary["precision"] = precision
        rundir.write_json(path, summary)


def _move_contents(src: Path, dst: Path) -> None:
    for item in src.iterdir():
        target = dst / item.name
        remove_path(target)
        shutil.move(str(item), str(target))


def _keep_init(run: Path, work: Path) -> None:
    """A fine-tuned model's ``config.yaml`` starts from weights in the scratch space, which is
    deleted: keep them as ``init.safetensors`` in the run so the config re-runs as is."""
    path = run / rundir.CONFIG
    if not path.is_file():
        return
    cfg = load_config(path)
    init = cfg.train.transfer.init_from
    if not init or not Path(init).is_file() or work.resolve() not in Path(init).resolve().parents:
        return
    kept = run / INIT_WEIGHTS
    shutil.copy2(init, kept)
    transfer = cfg.train.transfer.model_copy(update={"init_from": str(kept.resolve())})
    dump_config(cfg.model_copy(update={"train": cfg.train.model_copy(update={"transfer": transfer})}), path)


def finalize(out: Path, src_dir: Path, *, accepted: bool, reason: str, compression: dict[str, Any],
             source_onnx: Path | None = None, guard_split: dict[str, Any] | None = None,
             precision: str | None = None) -> dict[str, Any]:
    """Lay out ``out`` (see the module docstring), write ``summary.json`` with ``accepted``,
    ``reason`` and ``compression`` (+ ``guard_split``: the split the guard judged on);
    the candidate's summary takes ``compression["after"]``'s figures and ``precision`` (what
    its model is, e.g. ``int8 (static)``; a kept source keeps its own). Returns the summary."""
    cand = out / CANDIDATE
    _describe_candidate(cand, compression.get("after"), guard_split, precision)
    if guard_split:
        compression = {**compression, "guard_split": guard_split}
    if accepted:
        _move_contents(cand, out)
        cand.rmdir()
    else:
        if cand.exists():
            cand.rename(out / REJECTED)
        for f in _MODEL_FILES:
            if (src_dir / f).is_file():
                shutil.copy2(src_dir / f, out / f)
        if source_onnx is not None and source_onnx.is_file():
            shutil.copy2(source_onnx, out / ONNX)
    _keep_init(out if accepted else out / REJECTED, out / _WORK)
    shutil.rmtree(out / _WORK, ignore_errors=True)
    summary = rundir.read_json(out / rundir.SUMMARY) if (out / rundir.SUMMARY).is_file() else {}
    summary.update(accepted=bool(accepted), reason=reason,
                   compression={**compression, "source": str(src_dir.resolve())})
    rundir.write_json(out / rundir.SUMMARY, summary)
    log.info("%s: %s (%s)", out, "accepted" if accepted else "rejected", reason)
    return json.loads((out / rundir.SUMMARY).read_text())
