"""A cheap, real objective for the study machinery tests: logistic regression trained by
SGD on scikit-learn's digits, one ``partial_fit`` pass per epoch (milliseconds per trial).

The end-to-end tests run dlopt's own training engine instead (see test_cli_tune.py).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from typing import Any, Callable

import numpy as np

from dlopt.config import TuneConfig, parse_config


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return x[:1200], y[:1200], x[1200:], y[1200:]


def digits_objective(cfg: Any, ctx: Any) -> dict[str, float]:
    """Train a linear classifier; params = a LeNet-5 stand-in scaled by ``model.width``."""
    from safetensors.numpy import save_file
    from sklearn.linear_model import SGDClassifier

    width = float(cfg.model.model_extra.get("width", 1.0))
    ctx.check_static({"params": round(61706 * width * width)})
    xtr, ytr, xva, yva = _digits()
    clf = SGDClassifier(loss="log_loss", alpha=max(cfg.train.optim.weight_decay, 1e-7),
                        learning_rate="constant", eta0=cfg.train.optim.lr,
                        random_state=cfg.train.seed)
    acc = 0.0
    for epoch in range(1, cfg.train.epochs + 1):
        clf.partial_fit(xtr, ytr, classes=np.arange(10))
        acc = float(clf.score(xva, yva))
        ctx.report(epoch, {"val_accuracy": acc})
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    save_file({"coef": clf.coef_.astype(np.float32)}, str(ctx.run_dir / "model.safetensors"))
    (ctx.run_dir / "summary.json").write_text(json.dumps({"val": {"accuracy": acc}}))
    return {"val_accuracy": acc, "params": float(round(61706 * width * width)),
            "epochs": float(ctx.epochs)}


def shared_objective(cfg: Any, ctx: Any) -> dict[str, float]:
    """``digits_objective`` that first waits (<= 180 s) until another trial of the study exists:
    a worker process that starts late still gets work, so a test sees both workers run."""
    deadline = time.monotonic() + 180  # a loaded 2-core machine starts a process slowly
    while time.monotonic() < deadline:
        if any(t.number != ctx.number for t in ctx.trial.study.get_trials(deepcopy=False)):
            break
        time.sleep(0.1)
    return digits_objective(cfg, ctx)


def tune_config(space: dict | None = None, **search: Any) -> TuneConfig:
    """A TuneConfig over the digits objective's knobs (lr, weight decay)."""
    space = space or {
        "train.optim.lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
        "train.optim.weight_decay": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True},
    }
    search = {"space": space, "heartbeat": 0.2, "grace": 1.0, **search}
    return parse_config({"name": "digits", "train": {"epochs": 3}, "search": search},
                        TuneConfig)


def errors_in_threads(fn: Callable[[], Any], n: int) -> list[Exception]:
    """Run ``fn`` in ``n`` threads at once; the exceptions they raised (none: [])."""
    errors: list[Exception] = []

    def run() -> None:
        try:
            fn()
        except Exception as exc:  # surfaced to the caller
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
