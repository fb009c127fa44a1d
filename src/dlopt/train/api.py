"""The Python API: ``fit``, ``train_run``, ``load``, ``evaluate``, ``predict``.

This is the one adapter that reads a :class:`~dlopt.config.RunConfig`: it calls the data,
model, optimizer, schedule and loss factories with keyword arguments, turns switches into
technique and callback objects, and hands them to the loop. Nothing below it sees a config.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from pydantic import BaseModel
from torch import nn

from dlopt._files import empty_dir
from dlopt.config import (CUSTOM_MODEL, IN_MEMORY_DATA, ModelConfig, RunConfig, config_to_dict, dump_config,
                          parse_config, recorded_paths)
from dlopt.errors import ConfigError, DloptError, ModelError, first_line
from dlopt.train import checkpoint as io
from dlopt.train import callbacks as cb
from dlopt.train import distributed
from dlopt.train import rundir
from dlopt.train import techniques as tq
from dlopt.train.device import environment, retain_host_memory, seed_everything, select_device
from dlopt.train.events import Hooks
from dlopt.train.inputs import bundle_from, check_labels
from dlopt.train.loop import run
from dlopt.train.losses import class_weights, create_loss
from dlopt.train.metrics import (best_mode, compute_metrics, confusion_matrix, default_metrics, evaluate_model,
                                 predict_outputs, scores_from_outputs, validation_metrics)
from dlopt.train.optim import create_optimizer
from dlopt.train.schedules import create_schedule
from dlopt.train.state import State
from dlopt.train.transfer import init_from, read_init_weights

__all__ = ["FitResult", "fit", "train_run", "recipe_config", "undo_refused_start", "model_class", "data_fingerprint"]

log = logging.getLogger(__name__)

# config keys that may change between a run and its --resume (they do not change the math)
_RESUMABLE_CHANGES = {"train.epochs", "train.max_steps", "train.progress", "train.threads", "train.device",
                      "train.tensorboard"}


@dataclass
class FitResult:
    """What ``fit`` returns: the trained model (eval mode), its run directory, ``summary.json``
    as a dict and the per-epoch history (= ``metrics.jsonl`` rows)."""

    model: nn.Module
    run_dir: Path
    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------- recipe kwargs
def _field_paths() -> dict[str, str]:
    """Short recipe keyword -> config path, from the schema (first definition wins)."""
    from dlopt.config import DataConfig, TrainConfig

    paths: dict[str, str] = {}
    for name in TrainConfig.model_fields:
        paths.setdefault(name, f"train.{name}")
    for section in ("optim", "regularization", "loss", "schedule", "early_stopping", "checkpoint", "transfer"):
        sub = TrainConfig.model_fields[section].annotation
        for name in sub.model_fields:  # type: ignore[union-attr]
            paths.setdefault(name, f"train.{section}.{name}")
    for name in DataConfig.model_fields:  # seed stays train.seed (found first)
        paths.setdefault(name, f"data.{name}")
    paths.update({"optimizer": "train.optim.name", "lr": "train.optim.lr"})
    paths.pop("name", None)
    return paths


def _explicit(cfg: BaseModel) -> dict[str, Any]:
    """``cfg`` as data holding only the fields that were set (every section kept), so the
    options a user set stay checked against the names a keyword chooses (an optimizer's
    ``momentum`` against ``optimizer="adam"``), while a resolved config stays whole."""
    full = cfg.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key, value in full.items():
        sub = getattr(cfg, key, None)
        if isinstance(sub, BaseModel):
            out[key] = _explicit(sub)
        elif key in cfg.model_fields_set or key not in type(cfg).model_fields:  # extras: model options
            out[key] = value
    return out


def recipe_config(base: RunConfig | dict[str, Any] | None = None, **recipe: Any) -> RunConfig:
    """A RunConfig from ``base`` plus short keywords: any train field (``epochs=3``), any
    field of a train section (``lr``, ``weight_decay``, ``ema_decay``, ``every_steps``...), a
    section as a dict (``optim={...}``) or a name (``schedule="cosine"``), ``optimizer``,
    top-level ``name``/``data``/``model`` dicts. Unknown keywords are a ConfigError."""
    data = _explicit(base) if isinstance(base, RunConfig) else dict(base or {})
    paths = _field_paths()
    for key, value in recipe.items():
        if key in ("name",):
            data["name"] = value
            continue
        if key in ("data", "model", "train") and isinstance(value, dict):
            data.setdefault(key, {}).update(value)
            continue
        if key in ("optim", "schedule", "loss") and isinstance(value, str):
            path = f"train.{key}.name"
        elif key in paths:
            path = paths[key]
        else:
            raise ConfigError(f"unknown fit() keyword {key!r}; use a train/optim/schedule/loss/"
                              f"regularization field name, e.g. epochs, lr, optimizer, schedule")
        node = data
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf].update(value)
        else:
            node[leaf] = value
    return parse_config(data)


def fit(model: nn.Module | str | dict[str, Any] | None = None, data: Any = None, *,
        config: RunConfig | None = None,
        run_dir: str | Path | None = None, callbacks: Sequence[Any] = (), resume: bool = False,
        overwrite: bool = False, **recipe: Any) -> FitResult:
    """Train ``model`` (an ``nn.Module``, a zoo name, a zoo dict ``{"name": "mlp", "width": 64}``
    or None for ``config.model``) on ``data``: a dataset name (``"mnist"``), a data config
    mapping (``{"name": "mnist", "subset": 500}``, merged into ``config.data``), in-memory
    splits ``{"train": (x, y), "val": ..., "test": ...}``, tensors/arrays ``(x, y)``, a
    Dataset/DataLoader, a DataBundle, or None for ``config.data``; with ``config`` plus
    ``recipe`` keywords (see :func:`recipe_config`).

    ``run_dir`` defaults to ``runs/<name>``; a non-empty one needs ``resume`` or ``overwrite``.
    """
    if isinstance(model, (str, dict)):
        recipe["model"] = {"name": model} if isinstance(model, str) else dict(model)
    named = _data_config(data)
    if named is not None:
        recipe["data"] = named
    cfg = recipe_config(config, **recipe)
    module = model if isinstance(model, nn.Module) else None
    bundle = None if data is None or named is not None else bundle_from(
        data, val_fraction=cfg.data.val_fraction, seed=cfg.data.seed)
    return train_run(cfg, run_dir=run_dir if run_dir is not None else Path("runs") / cfg.name,
                     callbacks=callbacks, resume=resume, overwrite=overwrite, model=module, bundle=bundle)


def _data_config(data: Any) -> dict[str, Any] | None:
    """``fit``'s ``data`` as a data config mapping when it names a dataset (a name, or a
    mapping without the in-memory splits' keys), else None (in-memory data)."""
    if isinstance(data, str):
        return {"name": data}
    if isinstance(data, dict) and not {"train", "val", "test"} & set(data):
        return dict(data)
    return None


# ------------------------------------------------------------------------------- train_run
def train_run(cfg: RunConfig, *, run_dir: str | Path, callbacks: Sequence[Any] = (), resume: bool = False,
              overwrite: bool = False, model: nn.Module | None = None, bundle: Any = None) -> FitResult:
    """Run ``cfg`` in ``run_dir`` (``train.cv`` > 1: k-fold cross-validation, one sub-run per
    fold). ``model``/``bundle`` replace the config's model/data (used by ``fit``). Under
    torchrun every rank calls it; see :mod:`dlopt.train.distributed`. The saved config names
    what ran: ``model: {name: custom, class: ...}`` for ``model``, ``data: {name: in-memory}``
    for a ``bundle`` of in-memory data; such a config is refused without them."""
    cfg = _as_ran(cfg, model, bundle)
    _check_rebuildable(cfg, model, bundle)
    t = cfg.train
    distributed.check_supported(distributed.env_world(), cv=t.cv, unfreeze_at_epoch=t.transfer.unfreeze_at_epoch)
    if cfg.train.cv:
        from dlopt.train.cv import cross_validate

        if bundle is not None:
            _warn_test_split(bundle, cv=True)
        return cross_validate(cfg, run_dir=run_dir, folds=cfg.train.cv, callbacks=callbacks,
                              overwrite=overwrite, resume=resume, model=model, bundle=bundle)
    fingerprint = data_fingerprint(bundle) if cfg.data.name == IN_MEMORY_DATA else None
    device = select_device(t.device)
    if t.retain_host_memory and device.type == "cpu":
        retain_host_memory()
    created = not Path(run_dir).exists()
    fresh = not resume and (overwrite or created or not any(Path(run_dir).iterdir()))
    with distributed.session(device, backend=t.distributed.backend, timeout_s=t.distributed.timeout_s) as world:
        d, resume = distributed.prepare_run_dir(world, run_dir, resume=resume, overwrite=overwrite,
                                                config_text=dump_config(cfg), device=device)
        if resume and world.is_main:
            _check_resume_config(d, cfg)
            _check_resume_data(d, fingerprint)
        with environment(threads=t.threads, deterministic=t.deterministic), \
                undo_refused_start(d, fresh=fresh and not resume and world.is_main, created=created):
            seed_everything(t.seed)
            if bundle is None:
                from dlopt.data import load_data

                bundle = load_data(cfg.data)
            return _fit_bundle(cfg, d, bundle, model=model, callbacks=callbacks, resume=resume,
                               device=device, world=world, fingerprint=fingerprint)


def model_class(module: nn.Module) -> str:
    """``package.module.Class`` of a user's module, as a run of it records it."""
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def _as_ran(cfg: RunConfig, model: nn.Module | None, bundle: Any) -> RunConfig:
    """``cfg`` naming what trains: the config's model and data sections otherwise keep their
    defaults (lenet5, mnist), which config.yaml, checkpoints and exports would then claim."""
    update: dict[str, Any] = {}
    if model is not None:
        update["model"] = ModelConfig(name=CUSTOM_MODEL, **{"class": model_class(model)})
    # a bundle of the config's own dataset (cv folds, compress) has its name; fit's has "custom"
    if bundle is not None and bundle.info.name != cfg.data.name:
        update["data"] = cfg.data.model_copy(update={"name": IN_MEMORY_DATA})
    return cfg.model_copy(update=update) if update else cfg


def _check_rebuildable(cfg: RunConfig, model: nn.Module | None, bundle: Any) -> None:
    """The config of a fit() run (``dlopt train runs/x/config.yaml``) without the module or data
    it names: refused, as they live only in the Python process that ran it."""
    custom = model is None and cfg.model.name == CUSTOM_MODEL
    in_memory = bundle is None and cfg.data.name == IN_MEMORY_DATA
    if not (custom or in_memory):
        return
    cls = str(cfg.model.options().get("class", "MyModule"))
    what = [f"a user nn.Module ({cls})"] * custom + ["in-memory data"] * in_memory
    args = [f"{cls.rsplit('.', 1)[-1]}(...)"] * custom + [("(x, y)" if custom else "data=(x, y)")] * in_memory
    raise ConfigError(f"this config is the record of a run of {' on '.join(what)}, which it does not hold; "
                      f"retrain it from Python: dlopt.fit({', '.join(args)}, config=dlopt.load_config(PATH))")


def data_fingerprint(bundle: Any) -> dict[str, Any]:
    """Rows, sample shape and a blake2b hash of the splits' bytes, shapes and dtypes: what a
    resume on in-memory data compares (the config cannot name such data)."""
    h = hashlib.blake2b(digest_size=16)
    splits = {id(s): (name, s) for name, s in (("train", bundle.train), ("val", bundle.val), ("test", bundle.test))
              if s is not None}
    for name, split in splits.values():
        for part, t in (("x", split.x), ("y", split.y)):
            t = t.detach().cpu().contiguous()
            h.update(f"{name}.{part} {tuple(t.shape)} {t.dtype}\n".encode())
            h.update(t.view(-1).view(torch.uint8).numpy())
    return {"rows": sum(len(s) for _, s in splits.values()), "shape": list(bundle.info.input_shape),
            "blake2b": h.hexdigest()}


def _check_resume_data(d: Path, fingerprint: dict[str, Any] | None) -> None:
    if fingerprint is None:
        return
    old = io.read_meta(d / rundir.CHECKPOINTS).get("data_fingerprint")
    if old is None or old == fingerprint:  # None: saved before runs kept one; nothing to compare
        return

    def rows(fp: dict[str, Any]) -> str:
        return f"{fp['rows']} rows of shape {tuple(fp['shape'])} (blake2b {fp['blake2b'][:12]})"

    raise ConfigError(f"cannot resume {d} on other data: it trained on in-memory data of {rows(old)}, this call "
                      f"passes {rows(fingerprint)}; pass the run's data, or start over with overwrite=True")


@contextlib.contextmanager
def undo_refused_start(d: Path, *, fresh: bool, created: bool) -> Iterator[None]:
    """A run refused before its first step (bad data, model, transfer: exit 2) takes back the
    files it wrote in a fresh run directory, so the corrected command is not refused as "not
    empty". A run that trained (metrics or checkpoints exist) keeps everything."""
    try:
        yield
    except DloptError as exc:
        # a cv run's folds train in sub-folders: any metrics file below means work was done
        started = next(d.rglob(rundir.METRICS), None) is not None or (d / rundir.CHECKPOINTS).exists()
        if fresh and exc.exit_code == 2 and not started and d.is_dir():
            empty_dir(d)  # the directory was empty before: all of it is this run's
            if created:
                d.rmdir()
        raise


def _check_resume_config(d: Path, cfg: RunConfig) -> None:
    import yaml

    try:
        saved = yaml.safe_load((d / rundir.CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        raise ConfigError(f"cannot resume {d}: its {rundir.CONFIG} is missing or unreadable") from None
    now = config_to_dict(cfg)
    # a config.yaml written before paths were recorded absolute names its data file relative
    diff = _first_diff(recorded_paths(_as_recorded(saved, now, io.read_meta(d / rundir.CHECKPOINTS))), now)
    if diff is not None and diff[0] not in _RESUMABLE_CHANGES:
        key, old, new = diff
        raise ConfigError(f"cannot resume {d} with a changed config: {key} was {old!r}, now {new!r}")
    _check_raise_after_early_stop(d, (saved or {}).get("train", {}), cfg.train)


def _as_recorded(saved: Any, now: dict[str, Any], meta: dict[str, Any]) -> Any:
    """A config.yaml saved before runs named a user module / in-memory data holds the config's
    defaults there (lenet5, mnist): read as the record it would be now, so such a run resumes."""
    if not isinstance(saved, dict):
        return saved
    from dlopt.train.loaded import trained_custom_model

    old = dict(saved)
    if trained_custom_model(None, meta=meta) and (old.get("model") or {}).get("name") != CUSTOM_MODEL:
        old["model"] = now["model"]
    data = old.get("data") or {}
    if now["data"]["name"] == IN_MEMORY_DATA and (meta.get("info") or {}).get("name") != data.get("name"):
        old["data"] = {**data, "name": IN_MEMORY_DATA}
    return old


def _check_raise_after_early_stop(d: Path, old: dict[str, Any], t: Any) -> None:
    """Early stopping's decision is restored with the run: a raised budget would train nothing."""
    more_steps = old.get("max_steps") is not None and (t.max_steps is None or t.max_steps > old["max_steps"])
    if not (t.epochs > old.get("epochs", t.epochs) or more_steps) or not (d / rundir.SUMMARY).is_file():
        return
    summary = rundir.read_json(d / rundir.SUMMARY)
    if str(summary.get("stop_reason") or "").startswith("early stopping"):
        raise ConfigError(f"cannot resume {d} with a larger budget: early stopping ended it at epoch "
                          f"{summary.get('epochs')} and its decision stands; train a new run from its weights "
                          f"(--run-dir NEW --set train.transfer.init_from={d}) or start over with --overwrite")


def _first_diff(a: Any, b: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            sub = _first_diff(a.get(k), b.get(k), f"{prefix}{k}.")
            if sub is not None and sub[0] not in _RESUMABLE_CHANGES:
                return sub
        return None
    return None if a == b else (prefix.rstrip("."), a, b)


def _build_model(cfg: RunConfig, info: Any, module: nn.Module | None) -> tuple[nn.Module, str]:
    if module is not None:
        return module, type(module).__name__
    from dlopt.models import create_model

    return create_model(cfg.model.name, input_shape=info.input_shape, num_classes=info.out_features,
                        **cfg.model.options()), cfg.model.name


_ONE_TENSOR = "dlopt supports a model taking one input tensor and returning one logits tensor"


def _out_features(module: nn.Module, x: torch.Tensor) -> int:
    """Head width from one dry forward (eval mode, no grad); shape errors become ModelError."""
    _check_one_input(module)
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(x[:2])
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise ModelError(f"model forward failed on inputs of shape {tuple(x.shape[1:])}: "
                         f"{first_line(exc)}") from None
    finally:
        module.train(was)
    if not isinstance(out, torch.Tensor):
        got = (f"a dict (keys {', '.join(repr(k) for k in out)})" if isinstance(out, dict)
               else f"a {type(out).__name__} of {len(out)}" if isinstance(out, (tuple, list))
               else f"a {type(out).__name__}")
        raise ModelError(f"the model returned {got}, not one tensor; {_ONE_TENSOR}: wrap the model in an "
                         f"nn.Module whose forward returns the logits")
    return int(out.shape[-1]) if out.dim() > 1 else 1


def _check_one_input(module: nn.Module) -> None:
    """The loop calls ``model(x)``: a forward that needs more inputs would fail mid-batch."""
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):  # a builtin or C forward: the dry run speaks for it
        return
    needed = [p.name for p in params if p.default is p.empty
              and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    if len(needed) > 1:
        raise ModelError(f"the model's forward takes {len(needed)} inputs ({', '.join(needed)}); {_ONE_TENSOR} "
                         f"(model(x)): wrap it in an nn.Module whose forward(x) builds the others")


def _techniques(t: Any, *, device: torch.device, augment: nn.Module | None, frozen: list[str],
                input_ndim: int) -> list[Any]:
    """Switches -> technique objects (a table: condition, constructor)."""
    reg = t.regularization
    if reg.mixup_alpha > 0 and reg.cutmix_alpha > 0:
        raise ConfigError("train.regularization: use mixup_alpha or cutmix_alpha, not both")
    if reg.cutmix_alpha > 0 and input_ndim != 4:
        raise ConfigError("train.regularization.cutmix_alpha needs image inputs (N, C, H, W)")
    precision = tq.resolve_precision(t.precision, device)
    tr = t.transfer
    table: list[tuple[bool, Callable[[], Any]]] = [
        # a glob or freeze_until that freezes no parameter may still freeze a BatchNorm without any
        (bool(frozen) or bool(tr.freeze) or tr.freeze_until is not None,
         lambda: tq.Unfreeze(frozen, tr.unfreeze_at_epoch, patterns=tr.freeze, until=tr.freeze_until)),
        (augment is not None, lambda: tq.Augmentation(augment)),
        (reg.mixup_alpha > 0, lambda: tq.Mixup(reg.mixup_alpha, seed=t.seed)),
        (reg.cutmix_alpha > 0, lambda: tq.CutMix(reg.cutmix_alpha, seed=t.seed)),
        (reg.l1 > 0, lambda: tq.L1Penalty(reg.l1)),
        (reg.grad_accum > 1, lambda: tq.GradAccumulation(reg.grad_accum)),
        (precision != "fp32", lambda: tq.Precision(precision)),
        (t.pool_first, lambda: tq.PoolFirst(explicit="pool_first" in t.model_fields_set)),
        (t.channels_last and input_ndim == 4, tq.ChannelsLast),
        (t.compile, tq.Compile),
        (reg.clip_norm is not None or reg.clip_value is not None,
         lambda: tq.GradClip(max_norm=reg.clip_norm, max_value=reg.clip_value)),
        (True, lambda: tq.NonFiniteGuard(t.nonfinite)),
        (reg.ema_decay is not None, lambda: tq.EMA(reg.ema_decay)),
    ]
    return [make() for on, make in table if on]


def _monitor(cfg: RunConfig, task: str, has_val: bool) -> tuple[str | None, str]:
    if not has_val:
        return None, "max"
    metric = cfg.train.metric
    if metric == "auto":
        metric = "val_accuracy" if task == "classification" else "val_loss"
    elif not metric.startswith("val_"):
        metric = f"val_{metric}"
    # a name validation never computes would make "best" silently the last epoch
    names = validation_metrics(task)
    if metric.removeprefix("val_") not in names:
        raise ConfigError(f"train.metric={cfg.train.metric!r} is not computed on validation for {task}; "
                          f"use one of: {', '.join(names)}")
    return metric, best_mode(metric)


def _check_early_stopping(es: Any, task: str, has_val: bool) -> None:
    """Refuse a monitor no epoch will report now, not after the first epoch's work."""
    if not es.enabled:
        return
    if not has_val:
        raise ConfigError(f"train.early_stopping.monitor={es.monitor!r} needs a validation split "
                          f"(data.val_fraction > 0); none is computed")
    names = [f"val_{n}" for n in validation_metrics(task)]
    if es.monitor not in names:
        raise ConfigError(f"train.early_stopping.monitor={es.monitor!r} is not computed for {task}; "
                          f"use one of: {', '.join(names)}")
    want = best_mode(es.monitor)  # the wrong way round, it stops a run while it improves
    if es.mode != want:
        raise ConfigError(f"train.early_stopping.mode={es.mode!r} does not fit monitor {es.monitor!r} "
                          f"({'higher' if want == 'max' else 'lower'} is better); use mode: {want}")


def _check_unfreeze(t: Any) -> None:
    """An unfreezing epoch outside the run changes nothing (the layers stay frozen, or never
    were): said before training, as a warm-up longer than the run is."""
    at = t.transfer.unfreeze_at_epoch
    if at is not None and not 1 <= at < t.epochs:
        raise ConfigError(f"train.transfer.unfreeze_at_epoch={at}: run {t.epochs} epochs, so the frozen layers "
                          f"would {'never be frozen' if at == 0 else 'never unfreeze'}; allowed: 1 <= "
                          f"unfreeze_at_epoch < train.epochs (null keeps them frozen)")


def _has_val(bundle: Any) -> bool:
    # an empty validation split gets no evaluator (see _evaluator): nothing is monitored
    return bundle.val is not None and len(bundle.val) > 0


def _fit_bundle(cfg: RunConfig, d: Path, bundle: Any, *, model: nn.Module | None,
                callbacks: Sequence[Any], resume: bool, device: torch.device,
                world: distributed.World = distributed.World(),
                fingerprint: dict[str, Any] | None = None) -> FitResult:
    t, info = cfg.train, bundle.info
    monitor, mode = _monitor(cfg, info.task, _has_val(bundle))
    _check_early_stopping(t.early_stopping, info.task, _has_val(bundle))
    _check_unfreeze(t)
    module, model_name = _build_model(cfg, info, model)
    if t.transfer.init_from and not resume:
        init_from(module, read_init_weights(t.transfer.init_from), new_head=t.transfer.new_head)
    module.to(device)
    out = _out_features(module, bundle.train.rows(slice(0, 2)).to(device))
    check_labels(bundle.train, out, task=info.task)
    for name, split in (("val", bundle.val), ("test", bundle.test)):
        if split is not None:
            check_labels(split, out, task=info.task, what=name)

    from dlopt.data import build_augment, make_loader
    from dlopt.data.loader import min_batch_for

    # several processes: each rank takes its slice of the same seeded permutation
    dcfg = t.distributed
    loader = make_loader(bundle.train, batch_size=world.local_batch(t.batch_size, dcfg.batch), shuffle=True,
                         seed=t.seed, device=device, loader=cfg.data.loader, rank=world.rank,
                         world_size=world.world_size, min_batch=min_batch_for(module))
    weight = class_weights(t.loss.class_weights, task=info.task, y=bundle.train.y, num_classes=out)
    weight = None if weight is None else weight.to(device)
    loss_fn = create_loss(t.loss.name, task=info.task, label_smoothing=t.loss.label_smoothing,
                          weight=weight, huber_delta=t.loss.huber_delta, out_features=out)
    o = t.optim
    lr = o.lr * world.lr_factor(t.batch_size, dcfg.batch, dcfg.lr_scaling)
    optimizer = create_optimizer(o.name, module, lr=lr, weight_decay=o.weight_decay, momentum=o.momentum,
                                 betas=o.betas, eps=o.eps, decay_norm_and_bias=o.decay_norm_and_bias,
                                 layer_lr=o.layer_lr)
    s = t.schedule
    steps = tq.accumulation_steps(len(loader), t.regularization.grad_accum)
    schedule = create_schedule(s.name, optimizer, steps_per_epoch=steps, epochs=t.epochs, max_steps=t.max_steps,
                               warmup_epochs=s.warmup_epochs, step_size=s.step_size, gamma=s.gamma,
                               milestones=s.milestones, power=s.power, min_lr=s.min_lr, pct_start=s.pct_start,
                               div_factor=s.div_factor, final_div_factor=s.final_div_factor,
                               patience=s.patience, factor=s.factor, base_lr=lr)
    if world.is_main:  # after every refusal above: a refused --resume leaves its run's config.yaml as it was
        _write_run_files(d, cfg, bundle, resume=resume)
    from dlopt.train.techniques.freeze import frozen_names

    frozen = frozen_names(module, t.transfer.freeze, t.transfer.freeze_until)
    augment = (build_augment(cfg.data.augment, input_shape=info.input_shape,
                             input_range=bundle.train.value_range()) if cfg.data.augment else None)
    handlers = _techniques(t, device=device, augment=augment, frozen=frozen,
                           input_ndim=len(info.input_shape) + 1)
    meta = {"config": config_to_dict(cfg), "info": _info_dict(info), "model": model_name,
            "custom_model": model is not None}
    if weight is not None:  # eval must score the loss that was trained: keep the training labels' weights
        meta["class_weights"] = weight.tolist()
    if fingerprint is not None:
        meta["data_fingerprint"] = fingerprint
    if world.is_main:
        _warn_test_split(bundle)
    ckpt = cb.Checkpointing(d / rundir.CHECKPOINTS, every_steps=t.checkpoint.every_steps,
                            keep_best=t.checkpoint.keep_best, monitor=monitor, mode=mode, meta=meta,
                            resume_from=d / rundir.CHECKPOINTS / "last" if resume else None,
                            write=world.is_main)
    term = cb.GracefulTermination(ckpt)
    handlers += [schedule, ckpt, term]
    handlers += distributed.dist_handlers(world, batch_size=t.batch_size, mode=dcfg.batch, seed=t.seed,
                                          termination=term)
    if world.is_main:  # only rank 0 writes and reports
        handlers.append(cb.MetricsLog(d / rundir.METRICS))
    if t.early_stopping.enabled:
        es = t.early_stopping
        handlers.append(cb.EarlyStopping(monitor=es.monitor, mode=es.mode, patience=es.patience,
                                         min_delta=es.min_delta))
    if t.progress and world.is_main:
        handlers.append(cb.Progress(metric=monitor))
    if t.tensorboard and world.is_main:
        from dlopt.train.callbacks.tensorboard import TensorBoard

        handlers.append(TensorBoard(d / "tensorboard"))
    handlers += list(callbacks)

    val = _on_device(bundle.val, device)
    state = State(module=module, optimizer=optimizer, loss_fn=loss_fn, loader=loader, device=device,
                  epochs=t.epochs, schedule=schedule, max_steps=t.max_steps, handlers=handlers, run_dir=d,
                  task=info.task, evaluator=_evaluator(val, info.task, t.eval_batch_size))
    state.extra.update(cfg=cfg, info=info)
    run(state, Hooks(handlers))
    if not world.is_main:  # rank 0 writes the results; the others hand back the final weights
        state.module.eval()
        return FitResult(model=state.module, run_dir=d, summary={}, history=list(state.history))
    return _finish(cfg, d, state, bundle, ckpt, model_name=model_name, custom=model is not None)


def _write_run_files(d: Path, cfg: RunConfig, bundle: Any, *, resume: bool) -> None:
    """config.yaml (on resume too: a raised budget is the run's now, and config.yaml re-runs
    it) and, for a new run, the fitted preprocessing."""
    io.atomic_write(d / rundir.CONFIG, dump_config(cfg))
    if not resume and bundle.preprocessor is not None:
        bundle.preprocessor.save(d)


def _on_device(split: Any, device: torch.device) -> Any:
    if split is None:
        return None
    return split.to(device)


def _evaluator(val: Any, task: str, batch_size: int) -> Callable[[State], dict[str, float]] | None:
    if val is None or len(val) == 0:
        return None

    def evaluate(state: State) -> dict[str, float]:
        # [1:]: the loss is not a named metric, loss_fn adds it
        return evaluate_model(state.eval_model, val, task=task, batch_size=batch_size,
                              names=validation_metrics(task)[1:], loss_fn=state.loss_fn,
                              device=state.device, prefix="val_",
                              forward_context=state.forward_context)

    return evaluate


def _info_dict(info: Any) -> dict[str, Any]:
    """The dataset info a run records, its name as config.yaml records it (:func:`_data_name`)."""
    from dataclasses import asdict

    return {**{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(info).items()}, "name": _data_name(info)}


def _data_name(info: Any) -> str:
    """``csv:``/``npz:`` paths absolute: loading a run compares this name with its config's
    (in-memory data has another), and a relative one would name other data elsewhere."""
    from dlopt.data._formats import absolute_source

    return absolute_source(info.name)


def _restore_best(state: State, ckpt: cb.Checkpointing) -> bool:
    """Load the best checkpoint's evaluated weights (EMA when on) into ``state.eval_model``."""
    if ckpt.best_epoch is None or ckpt.best_epoch == state.epoch:
        return ckpt.best_epoch is not None
    best = io.read_checkpoint(ckpt.root, link="best")
    if "ema" in best.tensors:
        weights = {k.removeprefix("module."): v for k, v in best.tensors["ema"].items() if k.startswith("module.")}
    else:
        weights = best.weights
    state.eval_model.load_state_dict(weights)
    return True


def _finish(cfg: RunConfig, d: Path, state: State, bundle: Any, ckpt: cb.Checkpointing, *,
            model_name: str, custom: bool) -> FitResult:
    """Best weights -> model.safetensors, test metrics -> summary.json."""
    train_seconds = state.elapsed()  # training and its validation end here: not the test pass below
    has_best = _restore_best(state, ckpt)
    final = state.eval_model
    final.eval()
    io.atomic_write(d / rundir.WEIGHTS, io.weights_bytes(final))
    task = bundle.info.task
    started = time.perf_counter()
    outputs, targets, test = _test_pass(cfg, state, final, bundle)
    test_seconds = time.perf_counter() - started
    best_epoch = ckpt.best_epoch if has_best else (state.epoch or None)
    row = next((r for r in state.history if r["epoch"] == best_epoch), state.history[-1] if state.history else {})
    val = {k.removeprefix("val_"): v for k, v in row.items() if k.startswith("val_")}
    summary = {
        "schema_version": rundir.SCHEMA_VERSION,
        "name": cfg.name,
        "task": task,
        "dataset": _data_name(bundle.info),
        "model": model_name,
        "custom_model": custom,
        **_model_size(final, bundle.info.input_shape),
        "size_bytes": (d / rundir.WEIGHTS).stat().st_size,  # the file written above (as compression measures)
        "epochs": state.epoch,
        "steps": state.step,
        "train_seconds": round(train_seconds, 3),
        "test_seconds": round(test_seconds, 3),
        "best_epoch": best_epoch,
        "monitor": ckpt.monitor,
        "val": val,
        "test": test,
        "test_split": _test_split(bundle),
        "device": str(state.device),
        "precision": tq.resolve_precision(cfg.train.precision, state.device),
        "stop_reason": state.stop_reason or ("max_steps" if state.done else "epochs"),
        "nonfinite_skipped": next((h.skipped for h in state.handlers if isinstance(h, tq.NonFiniteGuard)), 0),
        "n_train": len(bundle.train),
        "n_val": len(bundle.val) if bundle.val is not None else 0,
        "n_test": len(bundle.test),
        "data_info": _info_dict(bundle.info),
    }
    for key in ("class_weights", "data_fingerprint"):
        if key in ckpt.meta:
            summary[key] = ckpt.meta[key]
    if task == "classification":
        summary["confusion_matrix"] = confusion_matrix(
            targets.cpu().numpy(), scores_from_outputs(outputs, task).cpu().numpy())
    rundir.write_json(d / rundir.SUMMARY, summary)
    log.info("run %s done: test %s", d, test)
    return FitResult(model=final, run_dir=d, summary=rundir.read_json(d / rundir.SUMMARY),
                     history=list(state.history))


def _test_pass(cfg: RunConfig, state: State, final: nn.Module,
               bundle: Any) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Outputs, targets and summary metrics of ``final`` on the test split."""
    task = bundle.info.task
    outputs, targets = predict_outputs(final, bundle.test.batches(cfg.train.eval_batch_size, state.device),
                                       forward_context=state.forward_context)
    return outputs, targets, compute_metrics(outputs, targets, task=task, loss_fn=state.loss_fn,
                                             names=_summary_metrics(task, bundle.info.out_features))


def _test_split(bundle: Any) -> str:
    """Which rows the test metrics are computed on: in-memory data without a test split of its
    own is scored on its validation rows (which also chose the best checkpoint) or, without
    those, on the training rows."""
    if bundle.test is bundle.val:
        return "validation"
    return "train" if bundle.test is bundle.train else "test"


def _warn_test_split(bundle: Any, *, cv: bool = False) -> None:
    split = _test_split(bundle)
    if split == "test":
        return
    # cross-validation pools train and validation rows into its folds: the "test" rows are among them
    rows = ("rows each fold trains or validates on" if cv else
            "validation rows, which also chose the best checkpoint" if split == "validation" else "training rows")
    rows += "" if cv else f" (summary.json test_split: {split})"
    log.warning("the data has no test split: the summary's test metrics are on the %s; pass "
                "{'train': ..., 'val': ..., 'test': (x, y)} for held-out metrics", rows)


def _summary_metrics(task: str, classes: int) -> tuple[str, ...]:
    if task == "classification":
        extra = ("precision_macro", "recall_macro") + (("top5",) if classes > 5 else ())
        return default_metrics(task) + extra
    return default_metrics(task)


def _model_size(module: nn.Module, input_shape: Iterable[int]) -> dict[str, Any]:
    """``params`` and ``macs`` (None when the summary cannot trace the model); the summary's
    ``size_bytes`` is the written weights file, not counted here."""
    from dlopt.models import summary

    try:
        s = summary(module, tuple(input_shape))
        return {"params": s.params, "macs": s.macs}
    except (DloptError, RuntimeError) as exc:
        log.warning("model summary failed: %s", exc)
        return {"params": sum(p.numel() for p in module.parameters()), "macs": None}
