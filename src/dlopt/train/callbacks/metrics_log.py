"""``metrics.jsonl``: one JSON line per epoch (epoch, step, train_loss, val metrics, lr,
seconds). Rewritten atomically from the history each epoch, so after a resume the file
matches the restored history exactly (no duplicated or lost rows)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dlopt.train.checkpoint import atomic_write

__all__ = ["MetricsLog", "jsonable"]


def jsonable(v: Any) -> Any:
    """NaN/Inf become null (JSON has no NaN)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v


class MetricsLog:
    """Writes ``path`` after every epoch."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_epoch_end(self, state: Any) -> None:
        text = "".join(json.dumps(jsonable(row)) + "\n" for row in state.history)
        atomic_write(self.path, text)
