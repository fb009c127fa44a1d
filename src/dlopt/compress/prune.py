"""Pruning: structured (channels/filters/neurons physically removed with torch-pruning) and
unstructured magnitude pruning (global or per layer, made permanent).

    res = prune_run("runs/resnet", "runs/resnet-pruned", method="l1", target="macs=0.5",
                    finetune_epochs=2)
    res.accepted, res.reason, res.after["latency_ms"]

Structured pruning rounds channel counts to ``round_to`` (default 8): measured here, halving
MACs with odd channel counts gave no ONNX Runtime speedup, rounding to 8 did. The pruned
model is rebuilt from config + ``arch.json`` + safetensors (no pickled module). Unstructured
pruning zeroes weights: it shrinks the *compressed* size (``compressed_bytes``), not the dense
latency, and the summary says so.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from dlopt.compress import _rundir as rd
from dlopt.compress._types import (Budget, CompressResult, MeasureSettings, Target, check_latency_measured,
                                   parse_target)
from dlopt.compress.guard import budget_record, judge, slower_flags
from dlopt.compress.measure import measure_torch, ort_latency, sparsity, torch_score, weight_tensors
from dlopt.errors import ConfigError, ModelError
from dlopt.registry import Registry

__all__ = ["PRUNE_METHODS", "prune_run", "prune_structured", "prune_unstructured", "MaskKeeper",
           "rebuild", "check_structured"]

log = logging.getLogger(__name__)

# name -> torch-pruning importance factory (structured) or None (unstructured), info: kind
PRUNE_METHODS: Registry[Any] = Registry("pruning method", ConfigError)

_MAX_RATIO = 0.95  # torch-pruning's channel ratio ceiling: never remove a whole layer
_RATIOS = tuple(r / 20 for r in range(1, 19))  # channel ratios tried: 0.05 .. 0.90
_TAYLOR_BATCHES = 4  # training batches whose gradients score channels for "taylor"


@PRUNE_METHODS.register("l1", kind="structured", help="L1 norm of each channel group")
def _l1() -> Any:
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=1)


@PRUNE_METHODS.register("l2", kind="structured", help="L2 norm of each channel group")
def _l2() -> Any:
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=2)


@PRUNE_METHODS.register("bn", kind="structured", help="BatchNorm scale |gamma| (network slimming)")
def _bn() -> Any:
    import torch_pruning as tp

    return tp.importance.BNScaleImportance()


@PRUNE_METHODS.register("taylor", kind="structured", help="first-order Taylor |w * dL/dw| on training batches")
def _taylor() -> Any:
    import torch_pruning as tp

    return tp.importance.GroupTaylorImportance()


@PRUNE_METHODS.register("global", kind="unstructured", help="smallest |w| over all layers together")
def _global() -> None:
    return None


@PRUNE_METHODS.register("local", kind="unstructured", help="smallest |w| in each layer, same fraction per layer")
def _local() -> None:
    return None


# ------------------------------------------------------------------------------ structured
def _head(model: nn.Module) -> list[nn.Module]:
    """The output layer (the last Linear): its outputs are the classes, never pruned."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1:]


def _ignored(model: nn.Module) -> list[nn.Module]:
    from torch.nn import MultiheadAttention

    # attention blocks keep their widths: heads are not part of the zoo's width options
    attn = [m for m in model.modules() if isinstance(m, MultiheadAttention) or "Attention" in type(m).__name__]
    return _head(model) + attn


def prune_structured(model: nn.Module, example: torch.Tensor, *, method: str, ratio: float,
                     round_to: int | None = 8) -> nn.Module:
    """Remove ``ratio`` of the channels of every prunable layer group (in place) by
    ``method``'s importance; returns ``model``. "taylor" needs ``.grad`` already set."""
    import torch_pruning as tp

    importance = PRUNE_METHODS.create(method)
    if importance is None:
        raise ConfigError(f"pruning method {method!r} is unstructured; use prune_unstructured")
    ignored = _ignored(model)
    with _quiet_unwrapped():
        per_group = _rounded_ratios(model, example, ratio, round_to, ignored) if round_to and round_to > 1 else None
        pruner = tp.pruner.MetaPruner(model, example, importance=importance, pruning_ratio=ratio,
                                      pruning_ratio_dict=per_group, max_pruning_ratio=_MAX_RATIO,
                                      ignored_layers=ignored)
        pruner.step()
    return model


@contextlib.contextmanager
def _quiet_unwrapped() -> Iterator[None]:
    """Drop torch-pruning's 'Unwrapped parameters detected' warning, repeated for every grid
    point: the parameters it names (msresnet's scale embedding of the attention fuse) belong to
    ignored attention blocks, whose widths stay, and rebuild() proves the result loads."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        yield


def _kept(channels: int, ratio: float, round_to: int) -> int:
    """The multiple of ``round_to`` nearest to ``(1 - ratio) * channels`` (ties keep more), at
    least ``round_to`` and at most ``channels`` (a layer narrower than ``round_to`` keeps its width)."""
    return min(channels, max(round_to, math.floor(channels * (1 - ratio) / round_to + 0.5) * round_to))


def _rounded_ratios(model: nn.Module, example: torch.Tensor, ratio: float, round_to: int,
                    ignored: list[nn.Module]) -> dict[nn.Module, float]:
    """Per-group ratios (keyed by each group's root layer) that keep ``_kept`` channels.

    Not torch-pruning's own ``round_to``: it rounds the kept count *down*, so a 16-channel group
    kept 8 at any ratio above 0, and a group that rounded to 0 was left whole while the next
    stage lost 7/8 of its channels (ResNet-14 x2 at ratio 0.8: widths 32/8/24 instead of 8/16/24).
    """
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    roots = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR, tp.ops.TORCH_LSTM)  # MetaPruner's root types
    out = {}
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=roots):
        root = group[0].dep.target.module
        channels = graph.get_out_channels(root)
        # torch-pruning caps a ratio at _MAX_RATIO: round the cap's width up, not the multiple down
        floor = math.ceil(channels * (1 - _MAX_RATIO) / round_to) * round_to
        keep = min(channels, max(_kept(channels, ratio, round_to), floor))
        # MetaPruner keeps int(channels * (1 - r)); the half channel guards against float error
        out[root] = 1 - (keep + 0.5) / channels if keep < channels else 0.0
    return out


def rebuild(model: nn.Module, name: str, options: dict[str, Any], *, input_shape: tuple[int, ...],
            num_classes: int) -> nn.Module:
    """A fresh zoo model with ``model``'s widths (``arch_options``) and its weights: proves the
    pruned model saves and loads from config + arch.json + safetensors."""
    from dlopt.models import arch_options, create_model

    arch = arch_options(model)
    if not arch:
        raise ModelError(_no_widths(name))
    fresh = create_model(name, input_shape=input_shape, num_classes=num_classes, **{**options, **arch})
    try:
        fresh.load_state_dict(model.state_dict())
    except RuntimeError as exc:
        raise ModelError(f"pruned {name!r} does not rebuild from its widths {arch}: "
                         f"{str(exc).splitlines()[1].strip()}") from None
    return fresh.eval()


def _no_widths(name: str) -> str:
    from dlopt.models import list_models, model_options

    prunable = [m for m in list_models() if {"channels", "hidden"} & set(model_options(m))]
    return (f"model {name!r} has no width options, so its channels cannot be removed; structured "
            f"pruning supports {', '.join(prunable)} (use --method global|local for any model)")


def check_structured(model: nn.Module, name: str, method: str) -> None:
    """ModelError/ConfigError before any work when ``method`` cannot prune ``model``: no width
    options to rebuild it from (gru, lstm, vit, user modules), only an output layer (an mlp of
    depth 0), or ``bn`` without BatchNorm (every channel would score the same)."""
    from dlopt.compress.qat import weight_layers
    from dlopt.models import arch_options

    if not arch_options(model):
        raise ModelError(_no_widths(name))
    if len(weight_layers(model)) < 2:
        raise ModelError(f"model {name!r} has no layer but its output layer, whose width is the classes: "
                         f"nothing to remove structurally; allowed: --method global|local")
    if method == "bn" and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ConfigError(f"--method bn scores channels by BatchNorm scale, and model {name!r} has no "
                          f"BatchNorm layer; allowed: l1, l2, taylor (or train it with norm: batchnorm)")


def _taylor_grads(model: nn.Module, bundle: Any, batch: int = 128) -> None:
    from dlopt.train.losses import create_loss

    # the task's default loss: cross-entropy on a regression target failed ("expected Long")
    loss = create_loss("auto", task=bundle.info.task)
    model.train()
    model.zero_grad(set_to_none=True)
    for i in range(_TAYLOR_BATCHES):
        rows = slice(i * batch, (i + 1) * batch)
        xb, yb = bundle.train.rows(rows), bundle.train.y[rows]  # a held split stays uint8
        if len(xb):
            loss(model(xb), yb).backward()
    model.eval()


def _pick(options: list[tuple[float, Any]], goal: float) -> Any:
    """The least aggressive option reaching ``goal`` (options are (achieved, item)); the most
    aggressive when none does."""
    reaching = [o for o in options if o[0] >= goal - 1e-9]
    return min(reaching, key=lambda o: o[0])[1] if reaching else max(options, key=lambda o: o[0])[1]


# ---------------------------------------------------------------------------- unstructured
def prune_unstructured(model: nn.Module, *, amount: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """Zero the smallest-|w| fraction ``amount`` of conv/linear/recurrent weights, over all
    layers (``global``) or in each weight tensor (``local``), made permanent; returns the masks
    by parameter name."""
    from torch.nn.utils import prune

    # recurrent weights too: on a GRU/LSTM the head alone was pruned (sparsity=0.5 zeroed 2 %)
    weights = [(m, w) for _, m, w in weight_tensors(model)]
    if scope == "global":
        prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for m, w in weights:
            prune.l1_unstructured(m, w, amount=amount)
    for m, w in weights:
        prune.remove(m, w)  # permanent: plain weights with zeros, no mask buffers
    return {f"{n}.{w}".lstrip("."): (getattr(m, w) != 0).detach().clone() for n, m, w in weight_tensors(model)}


class MaskKeeper:
    """Training callback: keeps pruned weights at zero while fine-tuning (re-applies the masks
    after every optimizer step, since Adam/weight decay would revive them)."""

    def __init__(self, masks: dict[str, torch.Tensor]) -> None:
        self.masks = masks
        self._params: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_fit_start(self, state: Any) -> None:
        params = dict(state.module.named_parameters())
        self._params = [(params[k], m.to(params[k].device)) for k, m in self.masks.items() if k in params]
        self._apply()

    @torch.no_grad()
    def _apply(self) -> None:
        for p, m in self._params:
            p.mul_(m)

    def on_after_optimizer_step(self, state: Any) -> None:
        self._apply()


# ------------------------------------------------------------------------------- the step
def _check(method: str, target: Target, steps: int, finetune_epochs: int, round_to: int | None,
           lr: float | None) -> str:
    kind = PRUNE_METHODS.get(method).info["kind"]
    if kind == "unstructured" and target.kind != "sparsity":
        raise ConfigError(f"--target {target} with unstructured method {method!r}: only sparsity=... is allowed "
                          f"(zeroed weights do not reduce dense MACs or latency; use l1|l2|bn|taylor)")
    if steps < 1:
        raise ConfigError(f"--steps={steps} is invalid; allowed: an integer >= 1")
    if finetune_epochs < 0:
        raise ConfigError(f"--finetune-epochs={finetune_epochs} is invalid; allowed: an integer >= 0")
    if round_to is not None and round_to < 1:
        raise ConfigError(f"--round-to={round_to} is invalid; allowed: an integer >= 1 (1: no rounding)")
    if lr is not None and not lr > 0:
        raise ConfigError(f"--lr={lr} is invalid; allowed: a number > 0 (default: the run's own learning rate)")
    return kind


class _Pruner:
    """One ``prune_run``: the source, settings and the candidate built step by step."""

    def __init__(self, src: rd.Source, out: Path, *, method: str, kind: str, target: Target, round_to: int | None,
                 measure: MeasureSettings) -> None:
        from dlopt.models import summary

        self.src, self.out, self.method, self.kind, self.target = src, out, method, kind, target
        self.round_to, self.measure = (round_to if round_to and round_to > 1 else None), measure
        self.info = src.bundle.info
        self.shape = tuple(self.info.input_shape)
        base = summary(src.model, self.shape)
        self.base_macs, self.base_params = base.macs, base.params
        self.example = src.bundle.test.x[:2]

    def _removed(self, model: nn.Module) -> float:
        from dlopt.models import summary

        s = summary(model, self.shape)
        return 1 - (s.macs / self.base_macs if self.target.kind == "macs" else s.params / self.base_params)

    def _at(self, model: nn.Module, ratio: float) -> nn.Module:
        m = copy.deepcopy(model)
        # deepcopy drops .grad, which "taylor" scores channels with
        for src_p, p in zip(model.parameters(), m.parameters()):
            p.grad = None if src_p.grad is None else src_p.grad.clone()
        return prune_structured(m, self.example, method=self.method, ratio=ratio, round_to=self.round_to)

    def _latency(self, model: nn.Module) -> float:
        path = rd.work_dir(self.out) / "probe.onnx"
        from dlopt.compress.measure import export_model

        export_model(model, self.example, path, check_inputs=self.src.bundle.test.x[:256], metadata={},
                     exporter=self.measure.exporter)
        lat = ort_latency(path, self.src.bundle.test.x.numpy(), MeasureSettings(
            batch_sizes=(self.measure.latency_batch,), threads=self.measure.threads,
            min_runs=self.measure.min_runs, min_seconds=self.measure.min_seconds))
        return lat[str(self.measure.latency_batch)]

    def _grid(self, model: nn.Module) -> list[tuple[float, nn.Module]]:
        """(fraction removed, pruned copy) for each distinct architecture on the ratio grid.
        A grid, not bisection: with rounding the result is not monotone in the ratio."""
        from dlopt.models import arch_options

        seen, out = set(), []
        for ratio in _RATIOS:
            pruned = self._at(model, ratio)
            key = repr(arch_options(pruned))
            if key not in seen:
                seen.add(key)
                out.append((self._removed(pruned), pruned))
        return out

    def structured(self, model: nn.Module, goal: float) -> nn.Module:
        """Prune ``model`` to ``goal`` (fraction removed vs the source, or a latency)."""
        if self.method == "taylor":
            _taylor_grads(model, self.src.bundle)
        grid = self._grid(model)
        if self.target.kind == "latency_ms":
            # bisection over the architectures sorted by MACs removed: each probe is timed
            ordered = [m for _, m in sorted(grid, key=lambda o: o[0])]
            lo, hi = 0, len(ordered) - 1
            if self._latency(ordered[hi]) <= goal:
                while lo < hi:
                    mid = (lo + hi) // 2
                    lo, hi = (lo, mid) if self._latency(ordered[mid]) <= goal else (mid + 1, hi)
            pruned = ordered[hi]
        else:
            pruned = _pick(grid, goal)
        cfg = self.src.config
        log.info("structured %s for %s: %.1f%% removed", self.method, self.target, 100 * self._removed(pruned))
        return rebuild(pruned, cfg.model.name, cfg.model.options(), input_shape=self.shape,
                       num_classes=self.info.out_features)

    def goal(self, step: int, steps: int) -> float:
        if self.target.kind == "latency_ms":
            return self.target.value
        return self.target.value * step / steps  # cumulative, against the source


def prune_run(run_dir: str | Path, out_dir: str | Path, *, method: str = "l1", target: str | Target = "macs=0.5",
              steps: int = 1, finetune_epochs: int = 1, round_to: int | None = 8, lr: float | None = None,
              budget: Budget | None = None, measure: MeasureSettings | None = None,
              overwrite: bool = False) -> CompressResult:
    """Prune the model of ``run_dir`` into ``out_dir`` (see the module docstring).

    ``steps`` > 1 prunes iteratively (cumulative targets ``target * i / steps``), each step
    fine-tuned for ``finetune_epochs`` through ``dlopt.train`` and checked by the guard; the
    first step that breaks ``budget`` stops the run and the last good model is kept.
    ``lr`` (fine-tuning, cosine-annealed) defaults to the source run's own learning rate.
    """
    tgt = parse_target(target)
    kind = _check(method, tgt, steps, finetune_epochs, round_to, lr)
    budget = budget or Budget()
    measure = measure or MeasureSettings()
    if tgt.kind == "latency_ms" and budget.latency_ms is None:
        budget = Budget(max_drop_pt=budget.max_drop_pt, latency_ms=tgt.value)
    check_latency_measured(budget, measure)
    with rd.step_out(out_dir, overwrite=overwrite, inputs=[run_dir]) as out:
        src = rd.open_source(run_dir)
        if kind == "structured":
            check_structured(src.model, src.config.model.name, method)
        lr = rd.rewound_lr(src, lr)
        work = rd.work_dir(out)
        before = measure_torch(src.model, src.bundle, work / "source.onnx", measure=measure, metadata=src.metadata())
        pr = _Pruner(src, out, method=method, kind=kind, target=tgt, round_to=round_to, measure=measure)
        if tgt.kind == "latency_ms" and steps > 1:
            log.info("latency target: pruning in one shot (steps=%d ignored)", steps)
            steps = 1

        model, good_dir, reason, done = src.model, None, "", 0
        val = src.bundle.val  # open_source guarantees one (carved from train if need be), never test
        metric = before["metric"]
        for i in range(1, steps + 1):
            cand, masks = copy.deepcopy(model), None
            if kind == "structured":
                cand = pr.structured(cand, pr.goal(i, steps))
            else:
                masks = prune_unstructured(cand, amount=pr.goal(i, steps), scope=method)
            step_dir = work / f"step-{i}"
            if finetune_epochs > 0:
                rd.finetune(src, cand, step_dir, epochs=finetune_epochs, lr=lr, name=out.name,
                            callbacks=[MaskKeeper(masks)] if masks else [])
                from dlopt.train import load

                cand = load(step_dir).model  # reloaded from disk: config + arch.json + safetensors
            else:
                rd.write_model_dir(step_dir, src, cand, name=out.name)
            step_score = {"metric": metric, f"val_{metric}": torch_score(cand, val.x, val.y, metric=metric)}
            ok, why = judge(before, step_score, Budget(max_drop_pt=budget.max_drop_pt))
            if not ok:
                reason = f"step {i}/{steps} rejected: {why}"
                if good_dir is None:
                    good_dir, model = step_dir, cand  # nothing good: measure it for the report, then reject
                break
            model, good_dir, done = cand, step_dir, i
        assert good_dir is not None
        good_dir.rename(out / rd.CANDIDATE)
        after = measure_torch(model, src.bundle, out / rd.CANDIDATE / rd.ONNX, measure=measure, metadata=src.metadata())
        after["sparsity"] = round(sparsity(model), 4)
        if done == 0:
            accepted = False
        else:
            accepted, why = judge(before, after, budget, latency_batch=measure.latency_batch)
            reason = why if not reason else f"kept step {done}/{steps}; {reason}"
        removed = {"macs_reduction": round(1 - after["macs"] / before["macs"], 4),
                   "params_reduction": round(1 - after["params"] / before["params"], 4)}
        note = ("unstructured sparsity shrinks the compressed size (compressed_bytes), not dense latency"
                if kind == "unstructured" else "channels removed; the model is rebuilt from arch.json")
        compression = {"step": "prune", "method": method, "kind": kind, "target": str(tgt),
                       "options": {"steps": steps, "finetune_epochs": finetune_epochs, "round_to": round_to, "lr": lr},
                       "budget": budget_record(budget, metric),
                       "steps_kept": done, **_target_record(tgt, after, removed, measure, accepted=accepted,
                                                            finished=done == steps),
                       "before": before, "after": after, **removed, **slower_flags(before, after), "note": note}
        summary = rd.finalize(out, src.run_dir, accepted=accepted, reason=reason, compression=compression,
                              source_onnx=work / "source.onnx", guard_split=src.guard_split)
        return CompressResult(run_dir=out, accepted=accepted, reason=reason, summary=summary, before=before,
                              after=after)


def _target_record(tgt: Target, after: dict[str, Any], removed: dict[str, float], measure: MeasureSettings, *,
                   accepted: bool, finished: bool) -> dict[str, bool]:
    """``target_met``: the kept model (OUT) reaches the target, so never when the guard rejected
    the candidate (OUT then holds the input); ``candidate_target_met``: the measured candidate
    (``after``, whose figures ``macs_reduction``/``params_reduction`` are) reaches it, kept or not."""
    reached = _met(tgt, after, removed, measure)
    return {"target_met": reached and accepted and finished, "candidate_target_met": reached}


def _met(tgt: Target, after: dict[str, Any], removed: dict[str, float], measure: MeasureSettings) -> bool:
    if tgt.kind == "macs":
        return removed["macs_reduction"] >= tgt.value - 1e-6
    if tgt.kind == "sparsity":
        return max(after.get("sparsity", 0.0), removed["params_reduction"]) >= tgt.value - 0.01
    lat = (after.get("latency_ms") or {}).get(str(measure.latency_batch))
    return lat is not None and lat <= tgt.value
