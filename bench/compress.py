"""Compression figures, every one measured on ONNX Runtime (1 thread) beside PyTorch eager.

Per seed: train a ResNet teacher on Fashion-MNIST (ResNet-14 x2 by default: stages 32/64/128,
696k parameters; ``--width 1`` is the 16/32/64 CIFAR ResNet, on which neither pruning nor INT8
buys much here: docs/compression.md), then
- prune: structured L1 pruning to >= 50 % of MACs removed, channel counts multiples of 16
  (``--round-to``: ONNX Runtime's AVX-512 convolution block; 8 left widths such as 24/40/80 that
  ran 1.36x where 16/48/96 ran 1.97x), fine-tuned at the teacher's learning rate
  (``dlopt.compress.prune_run``); speedup = ORT FP32 source / ORT pruned at batch 64, both
  timed side by side in one harness call;
- int8: static QDQ INT8 (``quantize_run``, uint8 activations, per-channel weights, MinMax
  calibration on 512 training images, ORT convolution kernel timed and the faster kept:
  ``conv_kernel="auto"``); speedups vs ORT FP32 and vs PyTorch eager FP32 (NCHW,
  ``inference_mode``) at batch 64, side by side; eager channels_last reported beside it;
- kd: a student with <= 1/4 of the teacher's parameters (the teacher's depth at 0.48 x its
  width: 23.0 % of ResNet-14 x2's parameters) trained with Hinton KD (``distill_run``) and the
  same student trained without KD, same recipe and epochs as each other. Students train for
  twice the teacher's epochs (``--student-epochs``), about the teacher's training time at the
  reduced run's size (train seconds are in the rows).
The same figures for LeNet-5 on MNIST under ``lenet5`` (verdicts, no targets: INT8 and
channel pruning are not expected to speed up a net that small). Medians over seeds.

    python bench/compress.py                               # full: 3 seeds, ResNet-14 x2 teacher
    python bench/compress.py --quick                       # brief: 1 seed, slices, 1 epoch

Output: one JSON object, ``schema_version``, ``prune`` {``macs_reduction``, ``acc_drop_pt``,
``ort_speedup_bs64``}, ``int8`` {``acc_drop_pt``, ``speedup_vs_ort_fp32_bs64``,
``speedup_vs_eager_bs64``}, ``kd`` {``student_params_ratio``, ``teacher_acc``, ``kd_acc``,
``nokd_acc``} for the ResNet, the same under ``lenet5``, plus targets, verdicts, per-seed
rows, settings and environment. Accuracies are test-set fractions; drops are points.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
TARGETS = {"prune": {"macs_reduction": 0.5, "acc_drop_pt": 0.5, "ort_speedup_bs64": 1.5},
           "int8": {"acc_drop_pt": 0.5, "speedup_vs_ort_fp32_bs64": 1.5, "speedup_vs_eager_bs64": 4.0},
           "kd": {"student_params_ratio": 0.25, "kd_minus_teacher_pt": -1.0}}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=12, help="ResNet teacher epochs")
    p.add_argument("--finetune-epochs", type=int, default=4, help="after pruning")
    p.add_argument("--round-to", type=int, default=16,
                   help="pruned channel counts are multiples of this (16: ONNX Runtime's AVX-512 conv block)")
    p.add_argument("--depth", type=int, default=14, help="ResNet teacher depth (6n+2)")
    p.add_argument("--width", type=float, default=2.0,
                   help="ResNet teacher width multiplier (stages 16/32/64 x WIDTH)")
    p.add_argument("--student", default=None,
                   help='KD student (JSON; default {"name": "resnet", "depth": DEPTH, "width": 0.48 x WIDTH})')
    p.add_argument("--student-epochs", type=int, default=None,
                   help="ResNet KD and no-KD student epochs (default: 2 x --epochs, about the teacher's "
                        "training time; LeNet's students get 2 x --lenet-epochs)")
    p.add_argument("--subset", type=int, default=None, help="training samples (default: all)")
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--lenet-epochs", type=int, default=4)
    p.add_argument("--skip-lenet", action="store_true")
    p.add_argument("--quick", action="store_true", help="1 seed, 6k-sample slices, 1-2 epochs")
    p.add_argument("--data-dir", default=os.environ.get("DLOPT_DATA_DIR", "/work/shared/data"))
    p.add_argument("--work", default=None, help="keep run directories here (default: a temp dir)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    a = p.parse_args()
    if a.round_to < 1:
        p.error(f"--round-to={a.round_to} is invalid; allowed: an integer >= 1 (1: no rounding)")
    if a.width <= 0:
        p.error(f"--width={a.width:g} is invalid; allowed: a number > 0 (multiplies the stage widths 16/32/64)")
    if a.student_epochs is not None and a.student_epochs < 1:
        p.error(f"--student-epochs={a.student_epochs} is invalid; allowed: an integer >= 1")
    if a.student is not None:
        a.student = _student_arg(p, a.student)
    if a.quick:
        a.seeds, a.epochs, a.finetune_epochs, a.lenet_epochs = 1, 2, 1, 1
        a.subset, a.test_subset = a.subset or 6000, a.test_subset or 2000
    if a.student_epochs is None:
        a.student_epochs = 2 * a.epochs
    return a


def _student_arg(p: argparse.ArgumentParser, text: str) -> dict[str, Any]:
    try:
        student = json.loads(text)
    except json.JSONDecodeError:
        student = None
    if not isinstance(student, dict) or "name" not in student:
        p.error(f"--student={text!r} is invalid; allowed: a JSON object with a model name, "
                'e.g. {"name": "resnet", "depth": 14, "width": 0.48}')
    return student


def _recipe(a: argparse.Namespace, seed: int, dataset: str, epochs: int) -> dict[str, Any]:
    data: dict[str, Any] = {"name": dataset, "data_dir": a.data_dir, "seed": seed, "val_fraction": 0.1}
    if a.subset:
        data["subset"] = a.subset
    if a.test_subset:
        data["test_subset"] = a.test_subset
    return {"data": data, "epochs": epochs, "seed": seed, "optimizer": "adamw", "lr": 4e-3,
            "schedule": "one-cycle", "label_smoothing": 0.1, "batch_size": 128, "progress": False}


def _teacher(model: dict[str, Any], recipe: dict[str, Any], run_dir: Path) -> Path:
    import dlopt
    from dlopt.train import recipe_config

    dlopt.fit(config=recipe_config(model=model, **recipe), run_dir=run_dir, overwrite=True)
    return run_dir


def _side_by_side(contestants: list[Any], x: Any, y: Any) -> dict[str, float]:
    """p50 ms at batch 64 for each contestant, one harness call: 3 rounds (A B C A B C, a
    fresh worker each), p50 = median of the round p50s, so one slow round moves no figure."""
    from dlopt.deploy import benchmark

    rep = benchmark(contestants, x, y, batch_sizes=(64,), threads=1, min_runs=30, min_seconds=0.5, rounds=3)
    return {name: e["64"]["p50_ms"] for name, e in rep["contestants"].items()}


def _eager_layouts(run_dir: Path, x: Any) -> dict[str, float]:
    """In-process eager FP32 p50 at batch 64, NCHW and channels_last (1 thread)."""
    import numpy as np
    import torch

    from dlopt.train import load

    torch.set_num_threads(1)
    model = load(run_dir).model.eval()
    out = {}
    for name, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        m = model.to(memory_format=fmt)
        xb = torch.from_numpy(x[:64]).contiguous(memory_format=fmt)
        with torch.inference_mode():
            for _ in range(5):
                m(xb)
            times = []
            for _ in range(30):
                t0 = time.perf_counter()
                m(xb)
                times.append(time.perf_counter() - t0)
        out[name] = round(float(np.median(times)) * 1e3, 3)
    return out


def _train_seconds(run_dir: Path) -> float | None:
    return json.loads((run_dir / "summary.json").read_text()).get("train_seconds")


def _result_dir(res: Any) -> Path:
    """Where a compression step's own model lives: a rejected run keeps it under rejected/
    and holds the source's files at the top."""
    return res.run_dir if res.accepted else res.run_dir / "rejected"


def _one(a: argparse.Namespace, seed: int, work: Path, *, model: dict[str, Any], student: dict[str, Any],
         dataset: str, epochs: int, student_epochs: int, finetune: int, round_to: int) -> dict[str, Any]:
    from dlopt.compress import Budget, MeasureSettings, distill_run, prune_run, quantize_run
    from dlopt.data import load_data
    from dlopt.deploy import Contestant
    from dlopt.train import load

    recipe = _recipe(a, seed, dataset, epochs)
    measure = MeasureSettings(latency=True, threads=1, min_runs=20, min_seconds=0.5)
    t0 = time.perf_counter()
    teacher = _teacher(model, recipe, work / "teacher")
    test = load_data(load(teacher).config.data).test
    x, y = test.x.numpy(), test.y.numpy()

    pr = prune_run(teacher, work / "pruned", method="l1", target="macs=0.5", round_to=round_to,
                   finetune_epochs=finetune, budget=Budget(max_drop_pt=0.5), measure=measure,
                   overwrite=True)  # fine-tuned at the teacher's lr
    pdir = _result_dir(pr)
    q = quantize_run(teacher, work / "int8", method="static", calibration="minmax", calib_samples=512,
                     budget=Budget(max_drop_pt=0.5), measure=measure, overwrite=True)
    qdir = _result_dir(q)
    fp32_onnx = q.run_dir / "model.onnx"  # the teacher's parity-checked FP32 export, kept either way
    times = _side_by_side([Contestant.pytorch({"run": str(teacher)}), Contestant("onnxruntime", "onnxruntime",
                           {"onnx": str(fp32_onnx.resolve())}), Contestant.onnx(qdir / "model.int8.onnx", int8=True),
                           Contestant("onnxruntime-pruned", "onnxruntime", {"onnx": str((pdir / "model.onnx").resolve())})],
                          x, y)
    layouts = _eager_layouts(teacher, x)

    kd = distill_run(teacher, student, work / "kd", temperature=4.0, alpha=0.9, epochs=student_epochs, baseline=True,
                     budget=Budget(max_drop_pt=1.0), measure=MeasureSettings(latency=False), overwrite=True,
                     **{k: v for k, v in recipe.items() if k not in ("data", "epochs", "seed")})
    c = kd.summary["compression"]
    teacher_acc = pr.before["test_accuracy"]
    train_seconds = {"teacher": _train_seconds(teacher), "kd": _train_seconds(_result_dir(kd)),
                     "nokd": c["nokd"].get("train_seconds")}
    row = {
        "seed": seed,
        "prune": {"macs_reduction": pr.summary["compression"]["macs_reduction"],
                  "acc_drop_pt": round(100 * (teacher_acc - pr.after["test_accuracy"]), 3),
                  "ort_speedup_bs64": round(times["onnxruntime"] / times["onnxruntime-pruned"], 3),
                  "accepted": pr.accepted, "reason": pr.reason,
                  "channels": json.loads((pdir / "arch.json").read_text()).get("channels")
                  if (pdir / "arch.json").is_file() else None},
        "int8": {"acc_drop_pt": round(100 * (q.before["test_accuracy"] - q.after["test_accuracy"]), 3),
                 "speedup_vs_ort_fp32_bs64": round(times["onnxruntime"] / times["onnxruntime-int8"], 3),
                 "speedup_vs_eager_bs64": round(times["pytorch"] / times["onnxruntime-int8"], 3),
                 "conv_kernel": q.summary["compression"].get("conv_kernel"),
                 "conv_kernel_p50_ms": q.summary["compression"].get("p50_ms"),  # both kernels, bs64
                 "accepted": q.accepted, "reason": q.reason},
        "kd": {"student_params_ratio": c["params_ratio"], "teacher_acc": teacher_acc,
               "kd_acc": kd.after["test_accuracy"], "nokd_acc": c["nokd"]["test_accuracy"],
               "accepted": kd.accepted, "reason": kd.reason, "student_epochs": student_epochs,
               "train_seconds": train_seconds},
        "p50_ms_bs64": {**times, "eager_inprocess_nchw": layouts["nchw"],
                        "eager_inprocess_channels_last": layouts["channels_last"]},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps({"progress": dataset, "seed": seed, "seconds": row["seconds"]}), file=sys.stderr)
    return row


_FIGURES = {"prune": ("macs_reduction", "acc_drop_pt", "ort_speedup_bs64"),
            "int8": ("acc_drop_pt", "speedup_vs_ort_fp32_bs64", "speedup_vs_eager_bs64"),
            "kd": ("student_params_ratio", "teacher_acc", "kd_acc", "nokd_acc")}


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, keys in _FIGURES.items():
        out[section] = {}
        for k in keys:
            vals = [r[section][k] for r in rows]
            out[section][k] = round(statistics.median(vals), 4)
            if len(vals) > 1:
                out[section][f"{k}_range"] = [round(min(vals), 4), round(max(vals), 4)]
    return out


def _verdicts(fig: dict[str, Any]) -> dict[str, str]:
    p, q, k = fig["prune"], fig["int8"], fig["kd"]
    return {
        "prune": "faster on ORT" if p["ort_speedup_bs64"] > 1.05 else
                 ("slower on ORT: keep the unpruned model" if p["ort_speedup_bs64"] < 1 / 1.05 else "no measurable speedup"),
        "int8": "INT8 faster than ORT FP32" if q["speedup_vs_ort_fp32_bs64"] > 1.05 else
                "INT8 not faster than ORT FP32: keep FP32",
        "kd": "KD helps" if k["kd_acc"] > k["nokd_acc"] else "KD does not beat the plain student",
    }


def _targets(fig: dict[str, Any]) -> dict[str, bool]:
    p, q, k = fig["prune"], fig["int8"], fig["kd"]
    return {
        "prune": p["macs_reduction"] >= 0.5 and p["acc_drop_pt"] <= 0.5 and p["ort_speedup_bs64"] >= 1.5,
        "int8": q["acc_drop_pt"] <= 0.5 and q["speedup_vs_ort_fp32_bs64"] >= 1.5 and q["speedup_vs_eager_bs64"] >= 4.0,
        "kd": k["student_params_ratio"] <= 0.25 and k["kd_acc"] > k["nokd_acc"] and k["kd_acc"] >= k["teacher_acc"] - 0.01,
    }


def main() -> None:
    a = _args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    from dlopt.deploy import capture_environment

    student = a.student or {"name": "resnet", "depth": a.depth, "width": round(0.48 * a.width, 4)}
    seeds = range(a.first_seed, a.first_seed + a.seeds)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dlopt-bench-compress-") as tmp:
        root = Path(a.work or tmp)
        resnet = [_one(a, s, root / f"resnet-{s}", model={"name": "resnet", "depth": a.depth, "width": a.width},
                       student=student, dataset="fashion-mnist", epochs=a.epochs, student_epochs=a.student_epochs,
                       finetune=a.finetune_epochs, round_to=a.round_to) for s in seeds]
        lenet = [] if a.skip_lenet else [
            _one(a, s, root / f"lenet-{s}", model={"name": "lenet5"}, student={"name": "lenet5", "width": 0.5},
                 dataset="mnist", epochs=a.lenet_epochs, student_epochs=2 * a.lenet_epochs, finetune=1,
                 round_to=8)  # LeNet's 6/16 channels sit below any conv block; 8 as before
            for s in seeds]
    fig = _median(resnet)
    name = f"resnet-{a.depth}" + (f"-x{a.width:g}" if a.width != 1 else "")
    report: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **fig, "model": name,
                              "dataset": "fashion-mnist", "targets": TARGETS, "targets_met": _targets(fig),
                              "verdicts": _verdicts(fig)}
    if lenet:
        lf = _median(lenet)
        report["lenet5"] = {**lf, "dataset": "mnist", "verdicts": _verdicts(lf)}
    report["per_seed"] = {"resnet": resnet, "lenet5": lenet}
    report["settings"] = {k: v for k, v in vars(a).items() if k not in ("out", "work")}
    report["environment"] = capture_environment(1)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=1)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
