"""A tiny, fully deterministic fit shared by the DDP tests: run under torchrun by
``test_ddp.py`` and ``test_ddp_random.py`` (each rank saves its final weights) and in the
test process for the one-process reference. The default is an MLP without BatchNorm or
dropout, so DDP is exact up to rounding; ``noisy`` adds dropout, mixup and noise augmentation."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

N_SAMPLES = 640  # val_fraction 0.1 -> 576 training samples = 9 global batches of 64
RECIPE: dict[str, Any] = dict(epochs=2, batch_size=64, lr=1e-2, seed=0, progress=False, threads=1)
MODEL = {"name": "mlp", "width": 32, "depth": 2}
MIXUP_ALPHA, DROPOUT = 0.4, 0.5


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes from a seeded Gaussian cloud."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_SAMPLES, 16, generator=g)
    y = (x[:, :4].sum(1) > 0).long() + (x[:, 4] > 0.5).long()
    return x, y


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


class SaveWeights:
    """Writes this rank's final weights to ``<out>/rank<R>.safetensors``."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_fit_end(self, state: Any) -> None:
        from safetensors.torch import save_file

        weights = {k: v.detach().clone().contiguous() for k, v in state.module.state_dict().items()}
        save_file(weights, str(self.out / f"rank{_rank()}.safetensors"))


class RecordDraws:
    """Writes this rank's first random draws of the run to ``<out>/draws<R>.pt``: the dropout
    mask of the first training batch (the model's first layer: zeros of nonzero inputs) and
    mixup's first ``lam``."""

    def __init__(self, out: Path) -> None:
        self.out, self.draws = out, {}

    def on_fit_start(self, state: Any) -> None:
        def record(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if module.training and "mask" not in self.draws:
                self.draws["mask"] = output == 0

        state.module[0].register_forward_hook(record)

    def on_batch_end(self, state: Any) -> None:
        mix = next(h for h in state.handlers if getattr(h, "state_key", None) == "mix")
        self.draws.setdefault("lam", mix.lam)

    def on_fit_end(self, state: Any) -> None:
        torch.save(self.draws, self.out / f"draws{_rank()}.pt")


class CountAllReduce:
    """Counts DDP's gradient all-reduces (a comm hook); writes ``<out>/allreduce<R>.json``."""

    order = 16  # after DDPWrap (15) wrapped the model

    def __init__(self, out: Path) -> None:
        self.out, self.calls = out, 0

    def on_fit_start(self, state: Any) -> None:
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        def hook(group, bucket):  # noqa: ANN001 -- DDP refuses annotations other than dist.GradBucket
            self.calls += 1
            return allreduce_hook(group, bucket)

        state.model.register_comm_hook(None, hook)

    def on_fit_end(self, state: Any) -> None:
        (self.out / f"allreduce{_rank()}.json").write_text(json.dumps({"calls": self.calls}))


class TermAt:
    """Sends SIGTERM to this process after optimizer step ``step`` (on rank ``rank`` only)."""

    def __init__(self, step: int, rank: int) -> None:
        self.step, self.rank = step, rank

    def on_batch_end(self, state: Any) -> None:
        if _rank() == self.rank and state.step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def noisy_model() -> nn.Module:
    """Dropout on the (nonzero) inputs first, so its mask is exactly the output's zeros."""
    torch.manual_seed(1)  # the same initial weights in every process
    return nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))


def fit(run_dir: Path, out: Path | None = None, *, noisy: bool = False, augment: bool = True,
        count_allreduce: bool = False, term_at: list[int] | None = None, **recipe: Any) -> Any:
    """``noisy``: dropout + mixup (+ gaussian noise augmentation unless ``augment=False``),
    recording the first draws; ``count_allreduce``: count DDP's all-reduces; ``term_at``:
    ``[step, rank]``, SIGTERM to that rank after that step."""
    import dlopt
    from dlopt.train.api import recipe_config

    callbacks: list[Any] = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        callbacks = [SaveWeights(out)] + [RecordDraws(out)] * noisy + [CountAllReduce(out)] * count_allreduce
    callbacks += [TermAt(*term_at)] if term_at else []
    recipe = {**RECIPE, **recipe}
    if not noisy:
        return dlopt.fit(dict(MODEL), data(), run_dir=run_dir, callbacks=callbacks, **recipe)
    steps = [{"op": "gaussian_noise", "p": 1.0, "std": 0.1}] if augment else []
    config = recipe_config(data={"augment": steps})
    return dlopt.fit(noisy_model(), data(), config=config, run_dir=run_dir, callbacks=callbacks,
                     mixup_alpha=MIXUP_ALPHA, **recipe)


if __name__ == "__main__":  # torchrun --nproc-per-node 2 ddp_fit.py OUT RUN_DIR [OPTIONS_JSON]
    from dlopt.train.callbacks import Terminated

    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    try:
        fit(Path(sys.argv[2]), Path(sys.argv[1]), **{"overwrite": not options.get("resume"), **options})
    except Terminated as exc:  # each rank's own line, for the test to read
        (Path(sys.argv[1]) / f"stopped{_rank()}.txt").write_text(str(exc))
