"""Time to 99.0 % MNIST test accuracy: the naive loop vs PyTorch Lightning vs dlopt.

Three contestants train LeNet-5 on full MNIST (60k train / 10k test), each until the target
test accuracy (checked after every epoch on the full test set; evaluation time counts) or
its epoch cap (``reached: false`` then; its ``seconds`` is the time to the cap, so a ratio over
such a run is a lower bound):

1. ``naive``: the source material's loop, written out below: a per-sample ``Dataset`` +
   ``DataLoader``, batch 64, Adam 1e-3, eager fp32, LeNet-5 with the source's layer sizes,
   up to ``--max-epochs`` (20);
2. ``lightning``: PyTorch Lightning training the zoo's LeNet-5 with dlopt's recipe (batch,
   optimizer, one-cycle schedule, label smoothing, precision, epochs, all read from the same
   YAML), fed as Lightning users do (a ``LightningDataModule`` returning
   ``DataLoader(TensorDataset(...))``), progress bar, logger, checkpointing off;
3. ``dlopt``: ``dlopt.train.train_run`` on ``examples/mnist-fast.yaml`` (the public engine
   path, every callback on: checkpoints, metrics log, NaN guard, run directory, summary;
   only the progress display is off, as it would print into the JSON on stdout).

Clocks start when a contestant begins turning the decoded arrays into its tensors/loaders
and stop when the target is confirmed; imports and IDX decoding are not timed (dlopt's
reader caches the decoded arrays per process, so its ``load_data`` call inside the clock only
scales, splits and wraps them). Every run is a fresh process (this script with ``--one``),
so nothing one contestant does to its process (dlopt's host-memory policy, caches, threads)
carries over to the next. Contestants alternate (A B C A B C ...) over ``--repeats``; repeat
``r`` seeds every contestant with the recipe's ``train.seed + r``.

A second section measures dlopt's per-step overhead over a minimal hand-written loop (same
model, batch, data, optimizer, schedule, loss, precision and memory layout), interleaved
step by step: a callback at the end of every ``train_run`` batch runs one step of the
minimal loop, so the two alternate A B A B and share every load swing; overhead = median
dlopt step / median minimal step - 1 (median over rounds, with min-max). It also gives dlopt's achieved training FLOP/s as a
fraction of the machine's matmul peaks (``bench/peak.py``).

    python bench/train_speed.py                          # full: 3 repeats, ~5-15 min quiet
    python bench/train_speed.py --repeats 1 --contestants dlopt
    python bench/train_speed.py --smoke                  # 2k samples, 1 epoch (the test)

Output (one JSON object on stdout): ``naive``, ``lightning``, ``dlopt`` objects with
``seconds``, ``epochs``, ``accuracy`` (medians), ``reached``, ``runs``; top-level
``ratio_naive_over_dlopt`` and ``ratio_lightning_over_dlopt`` (with ``_min``/``_max`` over
the repeats), ``step_overhead_vs_minimal``, ``overhead``, ``flops``, ``settings``, ``env``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "examples" / "mnist-fast.yaml"
CONTESTANTS = ("naive", "lightning", "dlopt")
log = logging.getLogger("train_speed")


# --------------------------------------------------------------------------- shared data
class Mnist:
    """Decoded MNIST arrays (uint8 images NCHW, int64 labels), optionally sliced."""

    def __init__(self, train: int | None, test: int | None) -> None:
        from dlopt.data import read_raw

        raw = read_raw("mnist")  # decodes + caches the IDX files for this process
        self.train, self.test = train, test
        self.x, self.y = raw.x[:train], raw.y[:train].astype(np.int64)
        self.x_test, self.y_test = raw.x_test[:test], raw.y_test[:test].astype(np.int64)


class TargetClock:
    """Per-epoch test accuracy and the time the target was first confirmed."""

    def __init__(self, target: float, t0: float) -> None:
        self.target, self.t0 = target, t0
        self.accuracies: list[float] = []
        self.seconds: float | None = None

    def record(self, accuracy: float) -> bool:
        """Log one epoch's accuracy; True (and the clock stops) once it reaches the target."""
        self.accuracies.append(accuracy)
        if accuracy >= self.target and self.seconds is None:
            self.seconds = time.perf_counter() - self.t0
        return self.seconds is not None

    def result(self) -> dict[str, Any]:
        reached = self.seconds is not None
        epochs = (next(i for i, a in enumerate(self.accuracies, 1) if a >= self.target)
                  if reached else len(self.accuracies))
        return {"seconds": self.seconds if reached else time.perf_counter() - self.t0,
                "epochs": epochs, "accuracy": self.accuracies[epochs - 1] if self.accuracies else None,
                "reached": reached, "curve": [round(a, 4) for a in self.accuracies]}


# ------------------------------------------------------------------- 1. the naive loop
class NaiveLeNet5(nn.Module):
    """LeNet-5 as the source material writes it (same layer sizes as the zoo's ``lenet5``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class NaiveDataset(torch.utils.data.Dataset):
    """One sample at a time, converted on access (what most tutorials write)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.tensor(self.images[i], dtype=torch.float32) / 255.0
        return x, int(self.labels[i])


def run_naive(data: Mnist, *, target: float, max_epochs: int, seed: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    torch.manual_seed(seed)
    clock = TargetClock(target, time.perf_counter())
    train = DataLoader(NaiveDataset(data.x, data.y), batch_size=64, shuffle=True)
    test = DataLoader(NaiveDataset(data.x_test, data.y_test), batch_size=1000)
    model = NaiveLeNet5()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    for _ in range(max_epochs):
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test:
                correct += (model(x).argmax(1) == y).sum().item()
        if clock.record(correct / len(test.dataset)):
            break
    return clock.result()


# --------------------------------------------------------------------- recipe (shared)
def load_recipe(overrides: list[str]) -> Any:
    from dlopt.config import load_config

    return load_config(RECIPE, overrides)


def recipe_facts(cfg: Any) -> dict[str, Any]:
    """The recipe fields the Lightning and minimal loops copy from the YAML (precision
    resolved for the device, as dlopt resolves ``auto``)."""
    from dlopt.train import select_device
    from dlopt.train.techniques import resolve_precision

    t = cfg.train
    device = select_device(t.device)
    if t.optim.name != "adam" or t.schedule.name != "one-cycle":
        raise SystemExit("train_speed: the Lightning/minimal loops implement adam + one-cycle only; "
                         f"the recipe has {t.optim.name} + {t.schedule.name}")
    return {"batch_size": t.batch_size, "lr": t.optim.lr, "epochs": t.epochs,
            "label_smoothing": t.loss.label_smoothing, "precision": resolve_precision(t.precision, device),
            "device": device.type,
            "channels_last": t.channels_last, "pool_first": t.pool_first, "eval_batch_size": t.eval_batch_size,
            "pct_start": t.schedule.pct_start, "div_factor": t.schedule.div_factor,
            "final_div_factor": t.schedule.final_div_factor, "weight_decay": t.optim.weight_decay}


def _autocast(precision: str, device: str) -> Callable[[], Any]:
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision in dtypes:
        return lambda: torch.autocast(device, dtype=dtypes[precision])
    return contextlib.nullcontext


def _zoo_lenet() -> nn.Module:
    from dlopt.models import create_model

    return create_model("lenet5", input_shape=(1, 28, 28), num_classes=10)


# -------------------------------------------------------------------------- 2. Lightning
def run_lightning(data: Mnist, cfg: Any, *, target: float, seed: int) -> dict[str, Any]:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # set after import: it sets its own
        logging.getLogger(name).setLevel(logging.ERROR)

    r = recipe_facts(cfg)
    L.seed_everything(seed, verbose=False)
    clock = TargetClock(target, time.perf_counter())

    class MnistData(L.LightningDataModule):
        def setup(self, stage: str) -> None:
            self.train = TensorDataset(torch.from_numpy(data.x).float() / 255.0, torch.from_numpy(data.y))
            self.test = TensorDataset(torch.from_numpy(data.x_test).float() / 255.0,
                                      torch.from_numpy(data.y_test))

        def train_dataloader(self) -> DataLoader:
            return DataLoader(self.train, batch_size=r["batch_size"], shuffle=True)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(self.test, batch_size=r["eval_batch_size"])

    class LitLeNet(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = _zoo_lenet()
            self.loss = nn.CrossEntropyLoss(label_smoothing=r["label_smoothing"])
            self.correct = self.seen = 0

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            x, y = batch
            return self.loss(self.model(x), y)

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            self.correct += int((self.model(x).argmax(1) == y).sum())
            self.seen += len(y)

        def on_validation_epoch_end(self) -> None:
            if clock.record(self.correct / max(1, self.seen)):
                self.trainer.should_stop = True
            self.correct = self.seen = 0

        def configure_optimizers(self) -> Any:
            opt = torch.optim.Adam(self.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
            steps = self.trainer.estimated_stepping_batches
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=r["lr"], total_steps=steps, pct_start=r["pct_start"], div_factor=r["div_factor"],
                final_div_factor=r["final_div_factor"], cycle_momentum=False)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    precision = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}[r["precision"]]
    trainer = L.Trainer(accelerator="gpu" if r["device"] == "cuda" else r["device"], devices=1, max_epochs=r["epochs"], precision=precision,
                        logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "num_workers" advice and similar
        trainer.fit(LitLeNet(), datamodule=MnistData())
    return clock.result()


# ------------------------------------------------------------------------------ 3. dlopt
class TargetStop:
    """dlopt callback: full test-set accuracy after each epoch; stop at the target."""

    order = -100  # before the checkpoint callback, so the stop is saved with the epoch

    def __init__(self, clock: TargetClock, test: Any, batch_size: int) -> None:
        self.clock, self.test, self.batch_size = clock, test, batch_size

    def on_epoch_end(self, state: Any) -> None:
        from dlopt.train.metrics import evaluate_model

        m = evaluate_model(state.eval_model, self.test, task="classification",
                           batch_size=self.batch_size, device=state.device, names=("accuracy",),
                           forward_context=state.forward_context)
        if self.clock.record(m["accuracy"]):
            state.request_stop("target reached")


def _dlopt_data(cfg: Any) -> Any:
    from dlopt.data import load_data

    return load_data(cfg.data)


def run_dlopt(data: Mnist, cfg: Any, *, target: float, seed: int) -> dict[str, Any]:
    from dlopt.train import train_run

    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed, "progress": False})})
    with tempfile.TemporaryDirectory() as tmp:
        clock = TargetClock(target, time.perf_counter())
        bundle = _dlopt_data(cfg)  # what train_run would load itself; the target check needs .test
        stop = TargetStop(clock, bundle.test, cfg.train.eval_batch_size)
        t0 = time.perf_counter()
        result = train_run(cfg, run_dir=Path(tmp) / "run", callbacks=[stop], bundle=bundle)
        out = clock.result()
        out["wall_seconds_with_finish"] = round(time.perf_counter() - clock.t0, 3)
        out["train_run_seconds"] = round(time.perf_counter() - t0, 3)
        out["summary_test_accuracy"] = result.summary["test"].get("accuracy")
    return out


# ------------------------------------------------------------ step overhead vs minimal
class MinimalLoop:
    """The same training step with nothing around it: the floor dlopt is measured against
    (same model, batch, data, optimizer, one-cycle schedule, loss, precision, layout)."""

    def __init__(self, cfg: Any, bundle: Any, seed: int) -> None:
        r = recipe_facts(cfg)
        torch.manual_seed(seed)
        self.fmt = torch.channels_last if r["channels_last"] else torch.contiguous_format
        device = torch.device(r["device"])
        self.model = _zoo_lenet().to(device, memory_format=self.fmt)
        if r["pool_first"]:  # the layer order dlopt trains with: the floor for the same work
            from dlopt.train.techniques import pool_first

            pool_first(self.model)
        self.x, self.y = bundle.train.x.to(device), bundle.train.y.to(device)
        self.bs = r["batch_size"]
        self.per_epoch = -(-len(self.y) // self.bs)
        # the implementation dlopt picks (fused where torch has it): the floor, not a handicap
        self.opt = torch.optim.Adam(self.model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"],
                                    fused=True)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=r["lr"], total_steps=r["epochs"] * self.per_epoch, pct_start=r["pct_start"],
            div_factor=r["div_factor"], final_div_factor=r["final_div_factor"], cycle_momentum=False)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=r["label_smoothing"])
        self.ctx = _autocast(r["precision"], r["device"])
        self.scaler = torch.amp.GradScaler(r["device"]) if r["precision"] == "fp16" else None
        self.order = torch.randperm(len(self.y)).to(device)
        self.i = 0

    def step(self) -> None:
        b = self.i % self.per_epoch
        self.i += 1
        idx = self.order[b * self.bs:(b + 1) * self.bs]
        x = self.x.index_select(0, idx).contiguous(memory_format=self.fmt)
        y = self.y.index_select(0, idx)
        with self.ctx():
            loss = self.loss_fn(self.model(x), y)
        if self.scaler is None:
            loss.backward()
            self.opt.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()


class Interleaved:
    """dlopt callback, last at every batch end: runs one minimal-loop step there, so dlopt
    and minimal steps alternate one by one (A B A B ...). A dlopt step is the time from the
    end of a minimal step to the next batch end (loader, every hook, the optimizer, ...)."""

    order = 10**6

    def __init__(self, minimal: MinimalLoop) -> None:
        self.minimal = minimal
        self.dlopt: list[float] = []
        self.mini: list[float] = []
        self._t: float | None = None

    def on_batch_end(self, state: Any) -> None:
        t0 = time.perf_counter()
        if self._t is not None:
            self.dlopt.append(t0 - self._t)
        self.minimal.step()
        self._t = time.perf_counter()
        self.mini.append(self._t - t0)


def overhead_round(cfg: Any, bundle: Any, *, steps: int, warmup: int, seed: int) -> tuple[list[float], list[float]]:
    """Per-step seconds (dlopt, minimal) of one ``train_run`` of ``steps`` steps."""
    from dlopt.train import train_run

    t = cfg.train.model_copy(update={"max_steps": steps, "seed": seed, "progress": False})
    probe = Interleaved(MinimalLoop(cfg, bundle, seed))
    with tempfile.TemporaryDirectory() as tmp:
        train_run(cfg.model_copy(update={"train": t}), run_dir=Path(tmp) / "run", callbacks=[probe],
                  bundle=bundle)
    return probe.dlopt[warmup:], probe.mini[warmup:]


def overhead_section(cfg: Any, *, rounds: int, steps: int, warmup: int) -> dict[str, Any]:
    """``rounds`` runs of ``steps`` interleaved steps; overhead = median ratio - 1."""
    bundle = _dlopt_data(cfg)
    ratios, dl_all, mi_all = [], [], []
    for r in range(rounds):
        dl, mi = overhead_round(cfg, bundle, steps=steps, warmup=warmup, seed=cfg.train.seed + r)
        dl_all += dl
        mi_all += mi
        ratios.append(statistics.median(dl) / statistics.median(mi))
        log.info("overhead round %d: dlopt %.2f ms, minimal %.2f ms", r, 1e3 * statistics.median(dl),
                 1e3 * statistics.median(mi))
    return {"dlopt_step_ms": round(1e3 * statistics.median(dl_all), 3),
            "minimal_step_ms": round(1e3 * statistics.median(mi_all), 3),
            "overhead": statistics.median(ratios) - 1, "overhead_min": min(ratios) - 1,
            "overhead_max": max(ratios) - 1, "rounds": rounds, "steps_per_round": steps,
            "warmup_steps": warmup, "interleave": "per step (A B A B ...)"}


# ---------------------------------------------------------------------------- FLOP/s
def _peak_module() -> Any:
    spec = importlib.util.spec_from_file_location("dlopt_bench_peak", ROOT / "bench" / "peak.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def flops_section(cfg: Any, step_ms: float, *, quick: bool) -> dict[str, Any]:
    """Training FLOP/s from the step time (fwd + bwd = 3x forward, 2 FLOP per MAC)."""
    from dlopt.models import summary

    macs = summary(_zoo_lenet(), (1, 28, 28)).macs
    flops = 6.0 * macs * cfg.train.batch_size / (step_ms / 1e3)
    peaks = _peak_module().measure(quick=quick)
    return {"macs_per_sample": macs, "train_flops_per_s": flops, "peaks_gflops": peaks,
            "fraction_of_fp32_matmul": flops / 1e9 / peaks["fp32_matmul"],
            "fraction_of_fp32_onednn": flops / 1e9 / peaks["fp32_onednn"],
            "fraction_of_bf16_matmul": flops / 1e9 / peaks["bf16_matmul"]}


# ---------------------------------------------------------------------------- summary
def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"seconds": None, "epochs": None, "accuracy": None, "reached": False, "runs": runs}
    acc = [r["accuracy"] for r in ok if r["accuracy"] is not None]
    return {"seconds": statistics.median(r["seconds"] for r in ok),
            "epochs": statistics.median(r["epochs"] for r in ok),
            "accuracy": statistics.median(acc) if acc else None,
            "reached": all(r["reached"] for r in ok), "runs": runs}


def ratio(num: list[dict[str, Any]], den: list[dict[str, Any]]) -> dict[str, float | None]:
    """Median ratio of seconds and its min-max over repeats (paired within a repeat)."""
    pairs = [a["seconds"] / b["seconds"] for a, b in zip(num, den)
             if "error" not in a and "error" not in b and b["seconds"]]
    if not pairs:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(pairs), "min": min(pairs), "max": max(pairs)}


def environment() -> dict[str, Any]:
    from dlopt.deploy import capture_environment

    return {**capture_environment(torch.get_num_threads()), "cuda": torch.cuda.is_available()}


def _preimport(names: list[str]) -> None:
    """Imports are shared and not timed: load every module a contestant needs up front."""
    import importlib

    # torch.optim imports torch._dynamo (~2.5 s) on the first optimizer built in a process:
    # an import, so it is paid here rather than by whichever contestant runs first
    mods = ["dlopt.data", "dlopt.models", "dlopt.train.api", "dlopt.train.metrics", "sklearn.metrics",
            "torch._dynamo"]
    if "lightning" in names:
        mods.append("lightning")
    for mod in mods:
        try:
            importlib.import_module(mod)
        except ImportError:  # reported by the contestant that needs it
            pass


def _run_one(name: str, data: Mnist, cfg: Any, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    try:
        if name == "naive":
            return run_naive(data, target=args.target, max_epochs=args.max_epochs, seed=seed)
        if name == "lightning":
            return run_lightning(data, cfg, target=args.target, seed=seed)
        return run_dlopt(data, cfg, target=args.target, seed=seed)
    except ImportError as exc:  # lightning is an optional (bench) extra
        return {"error": f"{type(exc).__name__}: {exc}"}


def _isolated(argv: list[str], name: str, seed: int) -> dict[str, Any]:
    """One contestant run in a fresh process of this script (``--one NAME:SEED``)."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, "--one", f"{name}:{seed}"],
                          stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        return {"error": f"{name} run exited with {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _one(args: argparse.Namespace) -> None:
    """The ``--one`` child: decode, import (untimed), run one contestant, print its JSON line."""
    name, seed = args.one.split(":")
    data = Mnist(2000 if args.smoke else None, 1000 if args.smoke else None)
    _preimport([name])
    print(json.dumps(_run_one(name, data, load_recipe(args.overrides), args, int(seed)), default=float))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--target", type=float, default=0.99, help="test accuracy to reach")
    p.add_argument("--max-epochs", type=int, default=20, help="epoch cap of the naive loop")
    p.add_argument("--contestants", default=",".join(CONTESTANTS), help="comma list (default: all)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="override a recipe key for dlopt and Lightning, e.g. train.batch_size=256")
    p.add_argument("--overhead-rounds", type=int, default=3, help="0 skips the step-overhead section")
    p.add_argument("--overhead-steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--smoke", action="store_true",
                   help="2k train / 1k test samples, 1 epoch, batch 128, 1 repeat (a correctness check)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # NAME:SEED, the per-run child
    args = p.parse_args(argv)
    if args.smoke:
        args.repeats, args.max_epochs, args.overhead_rounds, args.overhead_steps = 1, 1, 1, 6
        args.overrides = ["train.epochs=1", "train.batch_size=128", "data.subset=2000", "data.test_subset=1000",
                          *args.overrides]
    unknown = set(args.contestants.split(",")) - set(CONTESTANTS)
    if unknown:
        p.error(f"--contestants: unknown {sorted(unknown)}; allowed: {', '.join(CONTESTANTS)}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if not log.handlers:  # progress lines on stderr; stdout carries the JSON only
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        _one(args)
        return {}
    data = Mnist(2000 if args.smoke else None, 1000 if args.smoke else None)
    cfg = load_recipe(args.overrides)
    names = [c for c in CONTESTANTS if c in args.contestants.split(",")]
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTESTANTS}
    for rep in range(args.repeats):
        for name in names:  # A B C A B C: drift in machine load hits everyone alike
            res = _isolated(argv, name, cfg.train.seed + rep)
            runs[name].append(res)
            log.info("repeat %d %s: %s", rep, name, {k: v for k, v in res.items() if k != "curve"})
    out: dict[str, Any] = {c: summarize(runs[c]) for c in CONTESTANTS}
    for other in ("naive", "lightning"):
        r = ratio(runs[other], runs["dlopt"])
        out[f"ratio_{other}_over_dlopt"] = r["median"]
        out[f"ratio_{other}_over_dlopt_min"] = r["min"]
        out[f"ratio_{other}_over_dlopt_max"] = r["max"]
    out["step_overhead_vs_minimal"] = None
    out["overhead"] = out["flops"] = None
    if args.overhead_rounds > 0:
        ov = overhead_section(cfg, rounds=args.overhead_rounds, steps=args.overhead_steps,
                              warmup=1 if args.smoke else 5)
        out["overhead"], out["step_overhead_vs_minimal"] = ov, ov["overhead"]
        out["flops"] = flops_section(cfg, ov["dlopt_step_ms"], quick=args.smoke)
    out["settings"] = {"target": args.target, "repeats": args.repeats, "max_epochs_naive": args.max_epochs,
                       "recipe": str(RECIPE.relative_to(ROOT)), "overrides": args.overrides,
                       "train_samples": len(data.y), "test_samples": len(data.y_test), "smoke": args.smoke,
                       "recipe_facts": recipe_facts(cfg)}
    out["env"] = environment()
    text = json.dumps(out, indent=1, default=float)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return out


if __name__ == "__main__":
    main()
