"""Knowledge distillation: Hinton KD (soft targets at temperature T, weight alpha, plus the
hard-label loss) with an optional hint loss between chosen layers, trained by ``dlopt.train``.

    res = distill_run("runs/resnet20", {"name": "resnet", "width": 0.5}, "runs/kd",
                      temperature=4, alpha=0.9, epochs=10)

The student is a zoo model (name or dict), or a run directory (e.g. a pruned run, rebuilt
from config + arch.json and initialized from its weights). Teacher logits are computed once
and looked up per batch when the data are not augmented (no teacher forward per step).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlopt.compress import _rundir as rd
from dlopt.compress._types import Budget, CompressResult, MeasureSettings, check_latency_measured
from dlopt.compress.guard import budget_record, judge, slower_flags
from dlopt.compress.measure import measure_torch
from dlopt.config import config_to_dict, parse_config
from dlopt.errors import ConfigError

__all__ = ["kd_loss", "attention_hint_loss", "KnowledgeDistillation", "distill_run", "student_config"]

log = logging.getLogger(__name__)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft-target loss: KL(teacher_T || student_T) * T^2 (T^2 keeps gradient scale)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits.float() / t, dim=1), F.log_softmax(teacher_logits.float() / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)


def _attention_map(feat: torch.Tensor) -> torch.Tensor:
    """Parameter-free hint representation (attention transfer): channel-mean of squares,
    L2-normalized; works when student and teacher widths differ."""
    if feat.dim() == 2:
        return F.normalize(feat.float(), dim=1)
    return F.normalize(feat.float().pow(2).mean(1).flatten(1), dim=1)


def attention_hint_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """Squared distance between attention maps (spatial sizes matched by average pooling)."""
    if student_feat.dim() == 4 and student_feat.shape[2:] != teacher_feat.shape[2:]:
        size = min(student_feat.shape[2], teacher_feat.shape[2]), min(student_feat.shape[3], teacher_feat.shape[3])
        student_feat = F.adaptive_avg_pool2d(student_feat, size)
        teacher_feat = F.adaptive_avg_pool2d(teacher_feat, size)
    a, b = _attention_map(student_feat), _attention_map(teacher_feat)
    if a.shape != b.shape:
        raise ConfigError(f"--hint layers give features {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}; "
                          f"allowed: conv layers, or linear layers of equal width")
    return (a - b).pow(2).sum(1).mean()


class _LogitCache:
    """Teacher logits of every training row, found again from a batch by a fingerprint (a
    fixed random projection): the loader's shuffling never has to expose indices."""

    def __init__(self, teacher: nn.Module, x: torch.Tensor, batch: int = 1024) -> None:
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(x[0].numel(), generator=g, dtype=torch.float64)
        with torch.inference_mode():
            self.logits = torch.cat([teacher(x[i:i + batch]) for i in range(0, len(x), batch)]).float()
        keys = self._keys(x)
        self.sorted, self.order = torch.sort(keys)

    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1).to("cpu", torch.float64) @ self.w

    def lookup(self, x: torch.Tensor) -> torch.Tensor | None:
        """Cached logits for ``x``'s rows, or None if any row is unknown (e.g. augmented)."""
        keys = self._keys(x)
        pos = torch.searchsorted(self.sorted, keys).clamp(max=len(self.sorted) - 1)
        lower = (pos - 1).clamp(min=0)
        pick = torch.where((self.sorted[lower] - keys).abs() < (self.sorted[pos] - keys).abs(), lower, pos)
        tol = 1e-9 * (keys.abs() + 1.0)
        if not bool(((self.sorted[pick] - keys).abs() <= tol).all()):
            return None
        return self.logits[self.order[pick]].to(x.device)


class KnowledgeDistillation:
    """Technique hooked to the loop: after the hard-label loss, ``loss = (1 - alpha) * loss +
    alpha * kd_loss(student, teacher, T) [+ hint_weight * hint]``; the teacher never trains.
    For ``task="regression"`` the soft term is the MSE to the teacher's predictions (a
    softmax over one output is constant: the KL term would be 0) and ``temperature`` is unused."""

    def __init__(self, teacher: nn.Module, *, temperature: float = 4.0, alpha: float = 0.9,
                 hint: tuple[str, str] | None = None, hint_weight: float = 100.0,
                 cache_x: torch.Tensor | None = None, task: str = "classification") -> None:
        self.teacher, self.task = teacher.eval(), task
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.temperature, self.alpha, self.hint, self.hint_weight = temperature, alpha, hint, hint_weight
        self.cache = _LogitCache(self.teacher, cache_x) if cache_x is not None and hint is None else None
        self.cache_hits = 0
        self._feats: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def _hook(self, key: str, who: str, name: str) -> Any:
        def save(_m: nn.Module, _inp: Any, out: Any) -> None:
            if not isinstance(out, torch.Tensor):
                # e.g. a GRU/LSTM layer returns (outputs, hidden): no single feature map to match
                raise ConfigError(f"--hint: the {who} layer {name!r} outputs a {type(out).__name__}, not one "
                                  f"tensor; allowed: layers with one tensor output (conv, linear, blocks)")
            self._feats[key] = out

        return save

    def on_fit_start(self, state: Any) -> None:
        self.teacher.to(state.device)
        if self.hint:
            s_mod = dict(state.module.named_modules()).get(self.hint[0])
            t_mod = dict(self.teacher.named_modules()).get(self.hint[1])
            if s_mod is None or t_mod is None:
                which, name = ("student", self.hint[0]) if s_mod is None else ("teacher", self.hint[1])
                raise ConfigError(f"--hint: the {which} has no layer {name!r}")
            self._handles = [s_mod.register_forward_hook(self._hook("s", "student", self.hint[0])),
                             t_mod.register_forward_hook(self._hook("t", "teacher", self.hint[1]))]

    def _teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.cache is not None:
            hit = self.cache.lookup(x)
            if hit is not None:
                self.cache_hits += 1
                return hit
        with torch.no_grad():
            return self.teacher(x)

    def on_after_loss(self, state: Any) -> None:
        t_logits = self._teacher_logits(state.x)
        if self.task == "regression":
            soft = F.mse_loss(state.outputs.float(), t_logits.float())
        else:
            soft = kd_loss(state.outputs, t_logits, self.temperature)
        state.loss = (1 - self.alpha) * state.loss + self.alpha * soft
        if self.hint and "s" in self._feats and "t" in self._feats:
            state.loss = state.loss + self.hint_weight * attention_hint_loss(self._feats["s"], self._feats["t"].detach())

    def on_close(self, state: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def student_config(teacher_cfg: Any, student: str | dict[str, Any] | Path, *, name: str) -> tuple[Any, Path | None]:
    """The teacher's data + training recipe with the student's model; a student run also
    gives its weights as the initialization (returned second)."""
    data = config_to_dict(teacher_cfg)
    data["name"] = name
    init: Path | None = None
    if isinstance(student, (str, Path)) and Path(student).is_dir():
        from dlopt.train import rundir
        from dlopt.config import load_config

        init = Path(student)
        rd.check_zoo_run(init)
        scfg = load_config(init / rundir.CONFIG)
        model = {"name": scfg.model.name, **scfg.model.options()}
        if (init / rd.ARCH).is_file():
            model.update(rundir.read_json(init / rd.ARCH))
        data["model"] = model
        data["train"].setdefault("transfer", {}).update(init_from=str(init.resolve()), new_head=False)
    elif isinstance(student, dict):
        data["model"] = dict(student)
    elif isinstance(student, str):
        data["model"] = {"name": student}
    else:
        raise ConfigError(f"--student {student!r} is invalid; allowed: a zoo model name, a dict or a run directory")
    return parse_config(data), init


def distill_run(teacher_run: str | Path, student: str | dict[str, Any] | Path, out_dir: str | Path, *,
                temperature: float = 4.0, alpha: float = 0.9, hint: tuple[str, str] | str | None = None,
                hint_weight: float = 100.0, epochs: int = 3, lr: float | None = None, baseline: bool = False,
                budget: Budget | None = None, measure: MeasureSettings | None = None, overwrite: bool = False,
                **recipe: Any) -> CompressResult:
    """Train ``student`` from the teacher run's soft targets into ``out_dir`` (teacher's data,
    recipe + ``recipe`` keywords); guarded against the teacher's validation metric (accuracy or R2).
    ``baseline=True`` also trains the same student without KD (``compression.nokd``)."""
    from dlopt.train import recipe_config, train_run

    if not temperature > 0:
        raise ConfigError(f"--temperature={temperature!r} is invalid; allowed: a number > 0")
    if not 0 <= alpha <= 1:
        raise ConfigError(f"--alpha={alpha!r} is invalid; allowed: a number in [0, 1]")
    if epochs < 1:
        raise ConfigError(f"--epochs={epochs} is invalid; allowed: an integer >= 1")
    pair = _hint_pair(hint)
    budget, measure = budget or Budget(), measure or MeasureSettings()
    check_latency_measured(budget, measure)
    student_run = [student] if isinstance(student, (str, Path)) and Path(student).is_dir() else []
    with rd.step_out(out_dir, overwrite=overwrite, inputs=[teacher_run, *student_run]) as out:
        teacher = rd.open_source(teacher_run)
        cfg, init = student_config(teacher.config, student, name=out.name)
        overrides: dict[str, Any] = {"epochs": epochs, "progress": False, **recipe}
        if lr is not None:
            overrides["lr"] = lr
        cfg = recipe_config(cfg, **overrides)
        _check_student(cfg, teacher, pair)
        work = rd.work_dir(out)
        before = measure_torch(teacher.model, teacher.bundle, work / "source.onnx", measure=measure,
                               metadata=teacher.metadata())
        reg = cfg.train.regularization
        augmented = bool(cfg.data.augment) or reg.mixup_alpha > 0 or reg.cutmix_alpha > 0
        kd = KnowledgeDistillation(teacher.model, temperature=temperature, alpha=alpha, hint=pair,
                                   hint_weight=hint_weight, cache_x=None if augmented else teacher.bundle.train.x,
                                   task=teacher.bundle.info.task)
        cand = out / rd.CANDIDATE
        fit = train_run(cfg, run_dir=cand, callbacks=[kd], bundle=teacher.bundle)
        if init is not None and (init / rd.ARCH).is_file():
            rd.write_arch(cand, fit.model)
        after = measure_torch(fit.model, teacher.bundle, cand / rd.ONNX, measure=measure, metadata={
            **teacher.metadata(), "model": {"name": cfg.model.name, "options": cfg.model.options()}})
        extra: dict[str, Any] = {"params_ratio": round(after["params"] / before["params"], 4),
                                 "teacher_cache_hits": kd.cache_hits}
        if baseline:
            plain = train_run(cfg, run_dir=work / "nokd", bundle=teacher.bundle)
            metric = before["metric"]
            extra["nokd"] = {f"val_{metric}": plain.summary["val"].get(metric),
                             f"test_{metric}": plain.summary["test"].get(metric),
                             "train_seconds": plain.summary.get("train_seconds")}
        accepted, reason = judge(before, after, budget, latency_batch=measure.latency_batch)
        compression = {"step": "distill", "method": "kd" if pair is None else "kd+hint",
                       "student": cfg.model.name, "student_options": cfg.model.options(),
                       "options": {"temperature": temperature, "alpha": alpha, "hint": list(pair) if pair else None,
                                   "hint_weight": hint_weight, "epochs": epochs, "lr": cfg.train.optim.lr},
                       "budget": budget_record(budget, before["metric"]),
                       "before": before, "after": after, **slower_flags(before, after), **extra}
        summary = rd.finalize(out, teacher.run_dir, accepted=accepted, reason=reason, compression=compression,
                              source_onnx=work / "source.onnx", guard_split=teacher.guard_split)
        return CompressResult(run_dir=out, accepted=accepted, reason=reason, summary=summary, before=before,
                              after=after)


def _check_student(cfg: Any, teacher: rd.Source, pair: tuple[str, str] | None) -> None:
    """Build the student once before any work: a student that does not fit the teacher's data
    or a hint layer that does not exist is one line, not a failure after the teacher's export."""
    from dlopt.models import create_model

    info = teacher.bundle.info
    student = create_model(cfg.model.name, input_shape=tuple(info.input_shape), num_classes=info.out_features,
                           **cfg.model.options())
    for who, model, layer in zip(("student", "teacher"), (student, teacher.model), pair or ()):
        if layer not in dict(model.named_modules()):
            raise ConfigError(f"--hint: the {who} has no layer {layer!r}")


def _hint_pair(hint: tuple[str, str] | str | None) -> tuple[str, str] | None:
    if hint is None:
        return None
    if isinstance(hint, str):
        s, sep, t = hint.partition(":")
        if not sep or not s or not t:
            raise ConfigError(f"--hint {hint!r} is invalid; allowed: STUDENT_LAYER:TEACHER_LAYER, e.g. stages.1:stages.1")
        return s, t
    return tuple(hint)  # type: ignore[return-value]
