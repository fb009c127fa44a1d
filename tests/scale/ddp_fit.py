"""A tiny, fully deterministic fit shared by the DDP tests: run under torchrun by
``test_ddp.py`` (each rank saves its final weights) and in the test process for the
one-process reference. An MLP without BatchNorm or dropout, so DDP is exact up to rounding."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

N_SAMPLES = 640  # val_fraction 0.1 -> 576 training samples = 9 global batches of 64
RECIPE: dict[str, Any] = dict(epochs=2, batch_size=64, lr=1e-2, seed=0, progress=False, threads=1)
MODEL = {"name": "mlp", "width": 32, "depth": 2}


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes from a seeded Gaussian cloud."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_SAMPLES, 16, generator=g)
    y = (x[:, :4].sum(1) > 0).long() + (x[:, 4] > 0.5).long()
    return x, y


class SaveWeights:
    """Writes this rank's final weights to ``<out>/rank<R>.safetensors``."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_fit_end(self, state: Any) -> None:
        from safetensors.torch import save_file

        rank = int(os.environ.get("RANK", "0"))
        weights = {k: v.detach().clone().contiguous() for k, v in state.module.state_dict().items()}
        save_file(weights, str(self.out / f"rank{rank}.safetensors"))


def fit(run_dir: Path, out: Path | None = None, **recipe: Any) -> Any:
    import dlopt

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    callbacks = [SaveWeights(out)] if out is not None else []
    return dlopt.fit(dict(MODEL), data(), run_dir=run_dir, callbacks=callbacks, **{**RECIPE, **recipe})


if __name__ == "__main__":  # torchrun --nproc-per-node 2 ddp_fit.py OUT RUN_DIR
    fit(Path(sys.argv[2]), Path(sys.argv[1]), overwrite=True)
