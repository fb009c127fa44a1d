"""Learning-rate range test (Smith 2015; the fastai "valley" suggestion).

The learning rate grows exponentially from ``min_lr`` to ``max_lr`` over ``steps`` training
steps on a fresh model; the loss is smoothed and the test stops when the smoothed loss
exceeds ``diverge`` x its minimum (or turns non-finite).

Suggestion, robust to early loss spikes:

1. a running median over 5 steps removes isolated spikes (one bad batch, an early blow-up
   that recovers) before any smoothing can smear them over neighbours;
2. an exponential moving average with bias correction smooths the rest;
3. the *valley* rule picks, in the longest stretch where the smoothed loss keeps falling,
   the point two thirds of the way down — a rate that is still clearly learning, well below
   the minimum-loss rate (which is already close to divergence).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from dlopt.errors import ConfigError, RunError

if TYPE_CHECKING:
    from dlopt.config import RunConfig

log = logging.getLogger(__name__)

__all__ = ["LRFindResult", "lr_find", "smooth_losses", "suggest_lr"]


@dataclass
class LRFindResult:
    """The range test's curve, its suggestion and where the plot went."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    min_loss_lr: float
    diverged: bool
    # the rate of the step that diverged (its loss non-finite, so not in the curve, or 4x the
    # minimum): past the curve's last rate when the loss blew up outright
    diverged_lr: float | None = None
    run_dir: Path | None = None
    plot: Path | None = None


def smooth_losses(losses: Sequence[float], *, beta: float = 0.9, window: int = 5) -> list[float]:
    """Running median over ``window`` steps, then a bias-corrected moving average."""
    half = window // 2
    med = []
    for i in range(len(losses)):
        chunk = sorted(losses[max(0, i - half): i + half + 1])
        med.append(chunk[len(chunk) // 2])
    out, avg = [], 0.0
    for i, v in enumerate(med, start=1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out


def suggest_lr(lrs: Sequence[float], losses: Sequence[float], *, beta: float = 0.9) -> tuple[float, list[float]]:
    """``(suggested lr, smoothed losses)`` by the valley rule on the spike-filtered curve."""
    if len(lrs) != len(losses) or len(lrs) < 5:
        raise RunError(f"lr range test needs >= 5 finite steps, got {len(losses)}; raise steps "
                       f"or lower min_lr")
    smoothed = smooth_losses(losses, beta=beta)
    n = len(smoothed)
    # longest decreasing subsequence ending at each point (O(n^2), n is ~100)
    run = [1] * n
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
    end = max(range(n), key=lambda i: (run[i], -i))
    start = max(0, end - run[end] + 1)
    idx = start + (2 * (end - start)) // 3
    return float(lrs[idx]), smoothed


def lr_find(
    cfg: "RunConfig",
    *,
    run_dir: str | Path | None = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    diverge: float = 4.0,
) -> LRFindResult:
    """Run the range test for ``cfg``'s data, model, loss and optimizer; save
    ``lr_find.json`` and ``lr_find.png`` in ``run_dir`` when given."""
    if not (0 < min_lr < max_lr and math.isfinite(max_lr)):
        raise ConfigError(f"--min-lr={min_lr:g}, --max-lr={max_lr:g}: need 0 < min-lr < max-lr, finite")
    if steps < 5:
        raise ConfigError(f"--steps={steps}: need at least 5")
    if run_dir is not None:  # before the test: a place that cannot hold the results would lose it
        try:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--run-dir {run_dir}: cannot create it: {exc.strerror or exc}") from None
    lrs, losses, diverged_lr, before = _ramp(cfg, min_lr=min_lr, max_lr=max_lr, steps=steps,
                                             diverge=diverge)
    suggestion, smoothed = suggest_lr(lrs, losses)
    # the spike filter and the average's lag can leave the blow-up step lowest: never report it
    best = min(range(before), key=smoothed.__getitem__)
    result = LRFindResult(lrs, losses, smoothed, suggestion, float(lrs[best]),
                          diverged_lr is not None, diverged_lr)
    if run_dir is not None:
        result.run_dir = Path(run_dir)  # made before the test
        doc = {k: v for k, v in asdict(result).items() if k not in ("run_dir", "plot")}
        (result.run_dir / "lr_find.json").write_text(json.dumps(doc, indent=1) + "\n")
        result.plot = _plot(result, result.run_dir / "lr_find.png")
    return result


def _ramp(cfg: "RunConfig", *, min_lr: float, max_lr: float, steps: int,
          diverge: float) -> tuple[list[float], list[float], float | None, int]:
    """Train with an exponentially growing lr; stop when the loss diverges. Returns the curve,
    the lr of the step that diverged (None: none did) and how many of the curve's steps came
    before that step."""
    model, batches, loss_fn, optimizer = _parts(cfg, lr=min_lr)
    gamma = (max_lr / min_lr) ** (1 / (steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    best, avg = math.inf, 0.0
    model.train()
    for step, (x, y) in zip(range(steps), batches):
        lr = min_lr * gamma**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        value = float(loss.detach())  # one sync per step is fine for ~100 steps
        if not math.isfinite(value):  # this step is not in the curve
            return lrs, losses, lr, len(lrs)
        loss.backward()
        optimizer.step()
        lrs.append(lr)
        losses.append(value)
        avg = 0.9 * avg + 0.1 * value
        smooth = avg / (1 - 0.9 ** (step + 1))
        best = min(best, smooth)
        if step >= 5 and smooth > diverge * best:
            return lrs, losses, lr, len(lrs) - 1
    return lrs, losses, None, len(lrs)


def _parts(cfg: "RunConfig", *, lr: float) -> tuple[Any, Iterator[Any], Any, Any]:
    """A fresh model, an endless batch stream, the loss and the optimizer of ``cfg``."""
    import torch

    from dlopt.data import load_data, make_loader
    from dlopt.data.loader import min_batch_for
    from dlopt.models import create_model
    from dlopt.train.losses import class_weights, create_loss
    from dlopt.train.optim import create_optimizer

    t, o = cfg.train, cfg.train.optim
    device = t.device if t.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    bundle = load_data(cfg.data)
    info = bundle.info
    torch.manual_seed(t.seed)
    model = create_model(cfg.model.name, input_shape=info.input_shape,
                         num_classes=info.out_features, **cfg.model.options()).to(device)
    # the loss training will minimise, class weights included (balanced: from the labels)
    weight = class_weights(t.loss.class_weights, task=info.task, y=bundle.train.y,
                           num_classes=info.out_features)
    loss_fn = create_loss(t.loss.name, task=info.task, label_smoothing=t.loss.label_smoothing,
                          weight=None if weight is None else weight.to(device),
                          huber_delta=t.loss.huber_delta)
    optimizer = create_optimizer(o.name, model, lr=lr, weight_decay=o.weight_decay,
                                 momentum=o.momentum, betas=tuple(o.betas), eps=o.eps,
                                 decay_norm_and_bias=o.decay_norm_and_bias)
    loader = make_loader(bundle.train, batch_size=t.batch_size, shuffle=True, seed=t.seed,
                         device=device, min_batch=min_batch_for(model))

    def batches() -> Iterator[Any]:
        for epoch in itertools.count():  # as many epochs as the ramp needs
            loader.set_epoch(epoch)
            yield from loader

    return model, batches(), loss_fn, optimizer


def _plot(result: LRFindResult, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, color="0.75", lw=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=2, label="smoothed")
    ax.axvline(result.suggestion, color="C3", ls="--", label=f"suggestion {result.suggestion:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    top = max(result.smoothed[: max(1, len(result.smoothed) // 10)]) * 1.5
    ax.set_ylim(min(*result.losses, *result.smoothed) * 0.9, top)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
