"""Typed run configuration: one schema per component, YAML load/merge/dump, ``--set`` overrides.

No ML logic lives here. Names (datasets, models, optimizers, ...) are checked against their
registries so a bad name fails before anything runs, with one line that lists valid names.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dlopt.errors import ConfigError

__all__ = [
    "close_names",
    "Section",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "LossConfig",
    "RegularizationConfig",
    "EarlyStoppingConfig",
    "CheckpointConfig",
    "TransferConfig",
    "DistributedConfig",
    "TrainConfig",
    "RunConfig",
    "CUSTOM_MODEL",
    "IN_MEMORY_DATA",
    "check_run_name",
    "SearchParam",
    "SearchConfig",
    "TuneConfig",
    "load_config",
    "parse_config",
    "apply_overrides",
    "dump_config",
    "recorded_paths",
    "format_validation_error",
    "file_loc",
    "option_users",
]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values validated on assignment."""

    # NaN and infinity pass "> 0"-style bounds and break a run much later: refused everywhere
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# ----------------------------------------------------------------------------------- data
class PreprocessStep(Section):
    """One preprocessing op fitted on the training split only (see ``dlopt.data.preprocess``)."""

    op: Literal["zscore", "minmax", "pca", "lda", "impute", "label_encode"]
    n_components: int | None = Field(None, gt=0)
    strategy: Literal["mean", "median", "most_frequent"] = "mean"

    # the options each op reads in dlopt.data.preprocess; any other option set by the user is
    # refused: zscore with n_components: 3 trained a plain z-score
    USES: ClassVar[dict[str, tuple[str, ...]]] = {
        "zscore": (), "minmax": (), "pca": ("n_components",), "lda": ("n_components",),
        "impute": ("strategy",), "label_encode": (),
    }

    @model_validator(mode="after")
    def _options_used(self) -> "PreprocessStep":
        _refuse_unused(self, "preprocess")
        return self


class AugmentStep(Section):
    """One batched augmentation op, applied on the training device, off at evaluation."""

    op: Literal[
        "hflip", "crop", "rotate", "affine", "brightness", "contrast",
        "gaussian_noise", "salt_pepper", "cutout",
    ]
    p: float = Field(0.5, ge=0.0, le=1.0)
    degrees: float = Field(10.0, ge=0.0, le=180.0)
    padding: int = Field(2, ge=0)
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = Field(0.1, ge=0.0, le=1.0)
    amount: float = Field(0.1, ge=0.0, le=1.0)
    std: float = Field(0.1, ge=0.0)
    size: float = Field(0.25, gt=0.0, le=1.0)

    # the options each op reads in dlopt.data.augment (p: every op); any other option set by the
    # user is refused: gaussian_noise with amount: 0.5 trained with std 0.1
    USES: ClassVar[dict[str, tuple[str, ...]]] = {
        "hflip": (), "crop": ("padding",), "rotate": ("degrees",), "affine": ("degrees", "translate", "scale"),
        "brightness": ("amount",), "contrast": ("amount",), "gaussian_noise": ("std",),
        "salt_pepper": ("amount",), "cutout": ("size",),
    }

    @model_validator(mode="after")
    def _options_used(self) -> "AugmentStep":
        _refuse_unused(self, "augment")
        return self


# what config.yaml records for a run of dlopt.fit on a user nn.Module or in-memory data: no
# factory builds these, so `dlopt train` refuses them instead of training the zoo defaults
CUSTOM_MODEL = "custom"  # model: {name: custom, class: "package.module.Class"}
IN_MEMORY_DATA = "in-memory"  # data: {name: in-memory, ...}; the data itself is not saved


class DataConfig(Section):
    """Which dataset, how it is split, preprocessed, augmented and loaded."""

    name: str = "mnist"
    data_dir: str | None = None
    seed: int = 0
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    subset: int | None = Field(
        None, gt=0, description="use only N training samples (train + val pool), drawn with data.seed "
        "and stratified by class where possible (not the first N)"
    )
    test_subset: int | None = Field(
        None, gt=0, description="use only N test samples, drawn with data.seed and stratified by class where possible"
    )
    target: str | None = Field(None, description="target column for csv: datasets")
    preprocess: list[PreprocessStep] = Field(default_factory=list)
    augment: list[AugmentStep] = Field(default_factory=list)
    loader: Literal["auto", "memory", "dataloader"] = "auto"
    bad_samples: Literal["fail", "skip"] = "fail"

    @model_validator(mode="after")
    def _known_dataset(self) -> "DataConfig":
        # after, not a field validator: IDX sets in data_dir count as dataset names too
        from dlopt.data import check_dataset_name, check_target

        if self.name != IN_MEMORY_DATA:  # a fit() run's record; dlopt.train.api refuses to rebuild it
            check_dataset_name(self.name, self.data_dir)
            check_target(self.name, self.target)  # here, not only when a trial reads the data
        return self


# ---------------------------------------------------------------------------------- model
class ModelConfig(BaseModel):
    """A zoo model by name plus its options (checked against the model's signature)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = "lenet5"

    @model_validator(mode="after")
    def _known_model(self) -> "ModelConfig":
        from dlopt.errors import ModelError
        from dlopt.models import check_model_options

        if self.name == CUSTOM_MODEL:  # a fit() run's record; dlopt.train.api refuses to rebuild it
            return self
        try:
            check_model_options(self.name, self.options())
        except ModelError as err:  # a config file's mistake: report it as one
            raise ConfigError(str(err)) from None
        return self

    def options(self) -> dict[str, Any]:
        """The model's keyword options (everything but ``name``)."""
        return dict(self.model_extra or {})


# ---------------------------------------------------------------------------------- train
def _named(key: str, registry: Any, name: str) -> None:
    """Check ``name`` against ``registry``; the one-line error names the config key too."""
    try:
        registry.get(name)
    except ConfigError as err:
        raise ConfigError(f"{key}: {err}") from None


# a config field -> the factory parameter it feeds, where they differ (min_lr is absolute;
# the schedules take it as a fraction of the peak lr)
_ALIASES = {"schedule": {"min_lr": "min_factor"}, "loss": {"class_weights": "weight"}}


def _registry_of(section: str) -> tuple[Any, str]:
    """The registry behind ``train.<section>.name`` (``data.augment[].op``) and what its entries are called."""
    if section == "augment":
        from dlopt.data.augment import AUGMENT_OPS
        return AUGMENT_OPS, "augmentation op"
    if section == "preprocess":
        from dlopt.data.preprocess import PREPROCESS_OPS
        return PREPROCESS_OPS, "preprocessing op"
    if section == "optim":
        from dlopt.train.optim import OPTIMIZERS
        return OPTIMIZERS, "optimizer"
    if section == "schedule":
        from dlopt.train.schedules import SCHEDULES
        return SCHEDULES, "schedule"
    from dlopt.train.losses import LOSSES
    return LOSSES, "loss"


def option_users(section: str, name: str, option: str) -> list[str] | None:
    """When ``train.<section>.name`` = ``name`` (section: optim, schedule or loss; augment or
    preprocess: a ``data.augment`` / ``data.preprocess`` op) does not use the config field
    ``option`` while other choices do: those choices, else None.

    The options each choice takes come from its factory's signature (``Entry.params``); an
    augmentation or preprocessing op's from ``AugmentStep.USES`` / ``PreprocessStep.USES``."""
    registry, _ = _registry_of(section)
    param = _ALIASES.get(section, {}).get(option, option)
    steps = {"augment": AugmentStep, "preprocess": PreprocessStep}
    if section in steps:
        takers = [op for op, used in steps[section].USES.items() if option in used]
    else:
        takers = [e.name for e in registry if param in e.params()]
    if section == "loss" and name == "auto":
        from dlopt.train.losses import default_loss

        # auto is one of two losses once the task is known; create_loss checks the one picked
        chosen = [default_loss(t) for t in ("classification", "regression")]
    else:
        chosen = [name]
    return takers if takers and not set(chosen) & set(takers) else None


def _refuse_unused(section: BaseModel, key: str) -> None:
    """Refuse an option the user set (``model_fields_set``) that the ``name`` chosen in
    ``train.<key>`` does not use (:func:`option_users`): it would be silently ignored.

    A section naming every field is a resolved config written by dlopt (a run's config.yaml,
    a study's best_config.yaml, a tune trial): it is re-read as is."""
    if set(type(section).model_fields) <= section.model_fields_set:
        return
    name = getattr(section, "op" if key in ("augment", "preprocess") else "name")
    for field in sorted(section.model_fields_set):
        value = getattr(section, field)
        if _is_off(value) and value == type(section).model_fields[field].default:
            continue  # set to its "off" default (label_smoothing: 0): nothing the user asked for is lost
        takers = option_users(key, name, field)
        if takers:
            raise ValueError(f"{field} is not used by {_registry_of(key)[1]} {name!r}; it applies to "
                             f"{', '.join(takers)} (remove it or choose one of those)")


def _is_off(value: Any) -> bool:
    return value is None or value is False or value == 0 or value == "none" or value in ([], ())


class OptimConfig(Section):
    """Optimizer by name (``dlopt.train.optim``); ``lr`` is the peak learning rate."""

    name: str = "adam"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)
    decay_norm_and_bias: bool = Field(False, description="apply weight decay to norm/bias too")
    layer_lr: dict[str, float] = Field(
        default_factory=dict, description="parameter-name glob -> lr multiplier"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from dlopt.train.optim import OPTIMIZERS

        _named("train.optim.name", OPTIMIZERS, v)
        return v

    @model_validator(mode="after")
    def _options_used(self) -> "OptimConfig":
        _refuse_unused(self, "optim")
        return self

    @field_validator("betas")
    @classmethod
    def _betas_below_one(cls, v: tuple[float, float]) -> tuple[float, float]:
        # torch refuses them only when the optimizer is built: a traceback after loading the data
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1); got {list(v)}")
        return v

    @field_validator("layer_lr")
    @classmethod
    def _positive_multipliers(cls, v: dict[str, float]) -> dict[str, float]:
        # a multiplier <= 0 makes those layers' lr <= 0: they would climb the loss or never move
        bad = next((k for k, s in v.items() if not s > 0), None)
        if bad is not None:
            raise ValueError(f"the multiplier of {bad!r} is {v[bad]}; it must be > 0 "
                             f"(train.transfer.freeze keeps layers fixed)")
        return v


class ScheduleConfig(Section):
    """Learning-rate schedule by name (``dlopt.train.schedules``), optional linear warm-up."""

    name: str = "constant"
    warmup_epochs: float = Field(0.0, ge=0.0)
    step_size: int = Field(1, gt=0, description="epochs between decays (step)")
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    milestones: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list, description="epochs (>= 1) to decay at")
    power: float = Field(1.0, gt=0.0)
    min_lr: float = Field(0.0, ge=0.0)
    pct_start: float = Field(0.25, gt=0.0, lt=1.0, description="one-cycle: fraction rising")
    div_factor: float = Field(25.0, gt=0.0)
    final_div_factor: float = Field(1e4, gt=0.0)
    patience: int = Field(2, ge=0, description="plateau: epochs without improvement")
    factor: float = Field(0.1, gt=0.0, lt=1.0, description="plateau: lr multiplier")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from dlopt.train.schedules import SCHEDULES

        _named("train.schedule.name", SCHEDULES, v)
        return v

    @model_validator(mode="after")
    def _options_used(self) -> "ScheduleConfig":
        _refuse_unused(self, "schedule")
        return self


class LossConfig(Section):
    """Loss by name (``dlopt.train.losses``)."""

    name: str = "auto"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    huber_delta: float = Field(1.0, gt=0.0)
    class_weights: Literal["none", "balanced"] = "none"

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from dlopt.train.losses import LOSSES

        if v != "auto":
            _named("train.loss.name", LOSSES, v)
        return v

    @model_validator(mode="after")
    def _options_used(self) -> "LossConfig":
        _refuse_unused(self, "loss")
        return self


class RegularizationConfig(Section):
    """Techniques hooked into the loop; 0 / None means off."""

    l1: float = Field(0.0, ge=0.0)
    mixup_alpha: float = Field(0.0, ge=0.0)
    cutmix_alpha: float = Field(0.0, ge=0.0)
    clip_norm: float | None = Field(None, gt=0.0)
    clip_value: float | None = Field(None, gt=0.0)
    grad_accum: int = Field(1, ge=1)
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)


class EarlyStoppingConfig(Section):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    enabled: bool = False
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = Field(3, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


class CheckpointConfig(Section):
    """When to write ``checkpoints/last`` (atomically) besides every epoch end."""

    every_steps: int | None = Field(None, gt=0)
    keep_best: bool = True


class TransferConfig(Section):
    """Initialize from a run or checkpoint; freeze and unfreeze by parameter-name glob."""

    init_from: str | None = None
    freeze: list[str] = Field(default_factory=list, description="parameter-name globs to freeze")
    freeze_until: str | None = Field(None, description="freeze every parameter before this layer")
    unfreeze_at_epoch: int | None = Field(None, ge=0)
    new_head: bool = Field(True, description="replace the head when the class count differs")

    @model_validator(mode="after")
    def _unfreeze_needs_frozen(self) -> "TransferConfig":
        # with nothing frozen the unfreezing was dropped without a word
        if self.unfreeze_at_epoch is not None and not (self.freeze or self.freeze_until):
            raise ValueError(f"unfreeze_at_epoch={self.unfreeze_at_epoch} has nothing to unfreeze; "
                             f"set freeze or freeze_until too")
        return self


class DistributedConfig(Section):
    """Several processes (DDP under torchrun, ``dlopt train --nproc N``); no effect in one
    process. See docs/scaling.md."""

    batch: Literal["global", "per_rank"] = Field(
        "global", description="train.batch_size is the global batch (split over the ranks; "
        "resume works with any rank count dividing it) or each rank's batch")
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none", description="multiply optim.lr by k or sqrt(k), k = global batch / train.batch_size")
    backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="auto: nccl on CUDA, else gloo")
    timeout_s: float = Field(300.0, gt=0.0, description="a collective waiting longer fails the run")


class TrainConfig(Section):
    """The training recipe."""

    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, gt=0)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    seed: int = 0
    deterministic: bool = False
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    threads: int | None = Field(None, ge=1)
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    compile: bool = False
    channels_last: bool = False
    pool_first: bool = Field(
        True, description="train with monotone activations moved behind max-pools (same function, cheaper); "
                          "zoo models by default, a custom nn.Module only when set explicitly and its output "
                          "on a training batch is unchanged"
    )
    retain_host_memory: bool = Field(
        True, description="CPU: keep freed memory in the process (no page faults per step; process-wide)"
    )
    nonfinite: Literal["stop", "skip"] = "stop"
    metric: str = Field("auto", description="metric used for best checkpoint (auto: by task)")
    cv: int | None = Field(None, ge=2)
    tensorboard: bool = False
    progress: bool = True
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)

    @model_validator(mode="after")
    def _warmup_shorter_than_run(self) -> "TrainConfig":
        # a warm-up as long as the run never reaches the base lr; max_steps is compared in steps
        # once the data gives the steps per epoch (dlopt.train.schedules)
        w = self.schedule.warmup_epochs
        if w and w >= self.epochs:
            raise ValueError(f"schedule.warmup_epochs={w:g}: warm-up {w:g} epochs, run {self.epochs} epochs "
                             f"(train.epochs); allowed: a warm-up shorter than the run")
        return self


# ------------------------------------------------------------------------------------ run
class RunConfig(Section):
    """A whole training run: data + model + train. Later rooms add their own sections."""

    name: str = Field("run", description="run name: the directory runs/<name>")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("name")
    @classmethod
    def _one_directory(cls, v: str) -> str:
        return check_run_name(v)


def check_run_name(name: str) -> str:
    """``name`` if it is one directory name (runs/<name>, a study's runs/<study>), else ValueError."""
    # neither "" nor ".." may turn `--overwrite` onto runs/ itself or a place outside it
    if not name or name.startswith(".") or any(c in name for c in "/\\\x00"):
        raise ValueError("a run name is one directory name: not empty, no '/' or '\\', "
                         "not starting with '.'")
    return name


# ------------------------------------------------------------------------------ load/dump
def format_validation_error(err: ValidationError, *, prefix: str = "") -> str:
    """One line for the first error: the key, the bad value and what is allowed."""
    errors = err.errors(include_url=False)
    e = errors[0]
    loc = file_loc(e["loc"])
    key = f"{prefix}{'.'.join(map(str, loc))}" if loc else prefix.rstrip(".") or "config"
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        model = _model_at(err.title, loc[:-1])
        allowed = sorted(model.model_fields) if model is not None else []
        guess = _close_keys(model, str(loc[-1])) if model is not None else []
        where = f"{prefix}{''.join(f'{p}.' for p in loc[:-1])}"
        return (f"unknown key {key!r}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
                + (f"; did you mean {' or '.join(repr(where + g) for g in guess)}?" if guess else ""))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if e["type"] in ("value_error", "assertion_error") and "input" not in e:
        return f"{key}: {msg}"
    if loc != tuple(e["loc"]):  # a union: say every member it could have been
        others = [x["msg"] for x in errors[1:] if x["loc"] != e["loc"] and file_loc(x["loc"]) == loc]
        msg += "".join(f" or {m.removeprefix('Input should be ').split(',')[0]}" for m in others)
    bad = e.get("input")
    if isinstance(bad, dict):
        return f"{key}: {msg}"
    return f"{key}={bad!r}: {msg}"


# pydantic's names for a union member or a validator step: "list[any]", "int", "function-after"
_TAGS = re.compile(r"[\w-]+\[.*\]|int|float|str|bool|none|bytes|decimal|function-\w+", re.S)


def file_loc(loc: tuple) -> tuple:
    """An error's location as keys of the file: without pydantic's tags for the union member
    or validator that failed (a model's class name too), which the user never wrote."""
    models = _model_names()
    return tuple(p for p in loc if not (isinstance(p, str) and (_TAGS.fullmatch(p) or p in models)))


def _model_names() -> set[str]:
    """Class names of every pydantic model loaded (a union of models tags its members so)."""
    seen: set[type] = set()
    todo: list[type] = [BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return {c.__name__ for c in seen}


def _model_at(title: str, loc: tuple) -> type[BaseModel] | None:
    """The section schema at ``loc`` (list items and mapping values included) in the
    registered schema called ``title``."""
    model: type[BaseModel] | None = _SCHEMAS.get(title)
    item = False  # the part is a list index or a mapping key, not a field
    for part in loc:
        if model is None:
            return None
        if item:
            item = False
            continue
        ann = getattr(model.model_fields.get(str(part)), "annotation", None)
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None:
            inner = getattr(ann, "__args__", ())
            model = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
            item = model is not None and getattr(ann, "__origin__", None) in (list, dict)
    return model


def _close_keys(model: type[BaseModel], name: str) -> list[str]:
    """Keys of ``model`` a mistyped or misplaced ``name`` may have meant: a section's field of
    that name (``lr`` -> ``optim.lr``), else the same letters in another order (``lgo`` ->
    ``log``), else a close spelling (``epochz`` -> ``epochs``)."""
    nested = [p for p in _sub_keys(model) if p.rsplit(".", 1)[-1] == name]
    return nested[:3] or close_names(name, model.model_fields)


def close_names(name: str, names: Iterable[str]) -> list[str]:
    """The one of ``names`` a mistyped ``name`` may have meant (none, or a list of one): the
    same letters in another order (``lgo`` -> ``log``), else a close spelling (``widht``)."""
    names = list(names)
    # letters swapped before difflib, which rates 'lgo' as close to 'low' as to 'log'
    swapped = [k for k in names if sorted(k) == sorted(name)]
    return swapped[:1] or difflib.get_close_matches(name, names, n=1)


def _sub_keys(model: type[BaseModel], depth: int = 2) -> list[str]:
    """Dotted keys of the sections inside ``model``, ``depth`` sections deep."""
    out: list[str] = []
    for field, info in model.model_fields.items():
        ann = info.annotation
        if depth and isinstance(ann, type) and issubclass(ann, BaseModel):
            out += [f"{field}.{k}" for k in [*ann.model_fields, *_sub_keys(ann, depth - 1)]]
    return out


_SCHEMAS: dict[str, type[BaseModel]] = {}


def register_schema(schema: type[BaseModel]) -> type[BaseModel]:
    """Let error messages list the allowed keys of ``schema`` (top-level configs)."""
    _SCHEMAS[schema.__name__] = schema
    return schema


register_schema(RunConfig)


# --------------------------------------------------------------------------------- search
class SearchParam(Section):
    """One axis of a search space over a training-config key such as ``train.optim.lr``.

    ``float``/``int`` take ``low``/``high`` (``log`` for a log scale, ``step`` for a lattice);
    ``categorical`` takes ``choices``. ``grid`` gives the grid sampler's values (a list, or N
    evenly spaced points). ``when`` makes the axis conditional: ``{train.optim.name: sgd}``.
    """

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None
    grid: list[Any] | int | None = None
    when: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, v: Any) -> Any:
        # the generic message cannot list an axis's keys (axes sit under dotted dict keys)
        if isinstance(v, dict):
            unknown = sorted(str(k) for k in v if k not in cls.model_fields)
            if unknown:
                guess = _close_keys(cls, unknown[0])
                raise ValueError(f"unknown key {unknown[0]!r}; allowed: "
                                 f"{', '.join(sorted(cls.model_fields))}"
                                 + (f"; did you mean {' or '.join(map(repr, guess))}?" if guess else ""))
        return v

    @field_validator("low", "high", "step", "grid", mode="before")
    @classmethod
    def _no_booleans(cls, v: Any) -> Any:
        # YAML's true would pass as 1 (grid: true = a one-point grid)
        if isinstance(v, bool):
            raise ValueError("need a number, got a boolean")
        return v

    @model_validator(mode="after")
    def _keys_of_its_kind(self) -> "SearchParam":
        # a key of the other kind of axis would be ignored without a word (log: false is a no-op)
        if self.type == "categorical":
            used = [k for k in ("low", "high", "step") if getattr(self, k) is not None]
            used += ["log"] if self.log else []
        else:
            used = ["choices"] if self.choices is not None else []
        if used:
            takes = "choices, grid, when" if self.type == "categorical" else \
                "low, high, log, step, grid, when"
            raise ValueError(f"a {self.type} axis takes no {used[0]!r}; it takes {takes}")
        return self

    @model_validator(mode="after")
    def _check_range(self) -> "SearchParam":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            if isinstance(self.grid, int):
                raise ValueError(f"grid={self.grid}: a count is for float and int axes; a "
                                 "categorical grid lists some of its choices")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs 'low' and 'high'")
        if self.low > self.high:
            raise ValueError(f"low={self.low:g} > high={self.high:g}; need low <= high")
        if self.log and self.low <= 0:
            raise ValueError(f"log=true needs low > 0, got low={self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined; drop one")
        if self.type == "int" and not all(
            float(v).is_integer() for v in (self.low, self.high, self.step or 1)
        ):
            raise ValueError("int needs integer low, high and step")
        if (isinstance(self.grid, int) and self.grid < 1) or self.grid == []:
            raise ValueError(f"grid={self.grid}: need a non-empty list of values or a count >= 1")
        return self


class SamplerConfig(Section):
    """Optuna sampler by name (``dlopt.tune.SAMPLERS``) and its keyword options."""

    name: str = "tpe"
    seed: int | None = Field(0, ge=0, lt=2**32, description="numpy's seed range")
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from dlopt.tune._registry import SAMPLERS

        SAMPLERS.get(v)
        return v


class PrunerConfig(Section):
    """Early stopping of bad trials (``dlopt.tune.PRUNERS``); ``auto``: median, or pareto."""

    name: str = "auto"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from dlopt.tune._registry import PRUNERS

        if v != "auto":
            PRUNERS.get(v)
        return v


class ObjectiveSpec(Section):
    """A metric to optimize; ``direction`` defaults by metric (accuracy up, loss/params down)."""

    metric: str = "val_accuracy"
    direction: Literal["maximize", "minimize"] | None = None


class ConstraintSpec(Section):
    """A bound a trial must meet to count as feasible, e.g. ``{metric: params, max: 50000}``."""

    metric: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> "ConstraintSpec":
        if self.min is None and self.max is None:
            raise ValueError(f"constraint on {self.metric!r} needs 'min' or 'max'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"constraint on {self.metric!r}: min={self.min:g} > max={self.max:g}; "
                             "no trial could meet it")
        return self


class SearchConfig(Section):
    """What ``dlopt tune`` searches: space, sampler, pruner, objectives, constraints, budget."""

    space: dict[str, SearchParam] = Field(min_length=1)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    objectives: list[ObjectiveSpec] = Field(default_factory=lambda: [ObjectiveSpec()], min_length=1)
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    trials: int = Field(20, ge=1, description="study total of COMPLETE + PRUNED trials")
    timeout: float | None = Field(None, gt=0, description="seconds for one invocation")
    keep_checkpoints: int = Field(3, ge=0, description="trials that keep weights (best k)")
    heartbeat: float = Field(30.0, gt=0, description="seconds between a trial's heartbeats")
    grace: float | None = Field(None, gt=0, description="stale after this many s (4 beats)")
    storage: str | None = None
    study: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _has_space(cls, v: Any) -> Any:
        from dlopt.tune._space import check_search_shape

        check_search_shape(v)  # says what a space holds, where pydantic says "Field required"
        return v

    @field_validator("space", mode="before")
    @classmethod
    def _list_is_categorical(cls, v: Any) -> Any:
        # ``train.optim.name: [adam, sgd]`` is shorthand for a categorical axis
        if isinstance(v, dict):
            return {k: {"type": "categorical", "choices": c} if isinstance(c, list) else c
                    for k, c in v.items()}
        return v

    @field_validator("sampler", "pruner", mode="before")
    @classmethod
    def _name_only(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _grace_after_beat(self) -> "SearchConfig":
        if self.grace is not None and self.grace <= self.heartbeat:
            raise ValueError(f"grace={self.grace:g} must exceed heartbeat={self.heartbeat:g}")
        return self


class TuneConfig(RunConfig):
    """A training config plus a ``search:`` section (what ``dlopt tune`` reads)."""

    search: SearchConfig

    @model_validator(mode="after")
    def _space_fits_config(self) -> "TuneConfig":
        from dlopt.tune._space import check_search

        check_search(self)
        return self


register_schema(TuneConfig)


def _read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.__class__.__name__}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"invalid YAML in {p}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config mapping."""
    out = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"bad override {item!r}: expected key.sub=value, e.g. train.optim.lr=0.01")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node, rest = out, key.split(".")
        while True:
            part, rest = _key_at(node, rest)
            if not rest:
                node[part] = value
                break
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"bad override {item!r}: {part!r} is not a section")
            node = child
    return out


def _key_at(node: dict[str, Any], parts: list[str]) -> tuple[str, list[str]]:
    """The key of ``node`` that ``parts`` start with, and the parts left: the longest existing
    key holding dots (a search space names its axes by config keys, so
    ``search.space.train.optim.lr.low`` reaches the axis ``train.optim.lr``), else the first part."""
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in node:
            return ".".join(parts[:n]), parts[n:]
    return parts[0], parts[1:]


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


def parse_config(data: dict[str, Any], schema: type[BaseModel] = RunConfig) -> Any:
    """Validate a raw mapping against ``schema``; errors become one-line :class:`ConfigError`."""
    register_schema(schema)
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    schema: type[BaseModel] = RunConfig,
    ignore: tuple[str, ...] = (),
) -> Any:
    """Read YAML (or start empty), apply ``--set`` overrides, drop the top-level sections in
    ``ignore`` (e.g. ``search`` for a verb that trains once), validate."""
    data = apply_overrides(_read_yaml(path) if path is not None else {}, overrides)
    return parse_config({k: v for k, v in data.items() if k not in ignore}, schema)


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    """Plain-data form of a config (tuples become lists), suitable for YAML/JSON, with its
    data paths absolute (:func:`recorded_paths`): what dlopt writes and compares."""
    return recorded_paths(cfg.model_dump(mode="json"))


def recorded_paths(doc: Any) -> Any:
    """A run config mapping with ``data.name``'s file path and ``data.data_dir`` absolute, as
    they were resolved when the data was read: a written config records what ran, and a
    relative path re-read from another directory would silently name other data."""
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return doc
    from dlopt.data._formats import absolute_source
    from dlopt.data._registry import recorded_data_dir

    fixed = {**data, "name": absolute_source(data["name"])}
    data_dir = recorded_data_dir(data["name"], data.get("data_dir"))
    if data_dir is not None:  # $DLOPT_DATA_DIR too, where the set was read from it
        fixed["data_dir"] = data_dir
    return {**doc, "data": fixed}


def dump_config(cfg: BaseModel, path: str | Path | None = None) -> str:
    """Resolved config as YAML; written to ``path`` when given."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text
