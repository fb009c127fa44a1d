"""Hostile and broken files: pickles that act when loaded, broken safetensors, ONNX models
whose external data points outside their folder, and bad samples in a dataset."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import json
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rel_common import ROOT, fresh_dir, reference_run, result, run_config


# --------------------------------------------------------------------------- 4. malicious
class _Canary:
    """Unpickling this creates ``path`` (what a real attack would do with os.system)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _pickles(canary: Path) -> dict[str, bytes]:
    """Files that run code or rebuild objects when unpickled."""
    import torch

    raw = pickle.dumps({"optimizer": _Canary(canary)})
    buf = io.BytesIO()
    torch.save({"optimizer": _Canary(canary)}, buf)
    mod = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2), mod)
    npy = io.BytesIO()
    np.save(npy, np.array([_Canary(canary)], dtype=object), allow_pickle=True)
    return {"pickle-reduce": raw, "torch-save-reduce": buf.getvalue(), "pickled-module": mod.getvalue(),
            "npy-object-reduce": npy.getvalue()}


def _safetensors_variants(good: bytes) -> dict[str, bytes]:
    """Broken copies of a valid safetensors file: truncated, oversized header length, header
    not JSON, offsets past the end, overlapping offsets."""
    n = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + n])
    data = good[8 + n:]

    def pack(h: dict[str, Any], body: bytes = data) -> bytes:
        text = json.dumps(h).encode()
        text += b" " * (-len(text) % 8)
        return struct.pack("<Q", len(text)) + text + body

    names = [k for k in header if k != "__metadata__"]
    past_end = {**header, names[0]: {**header[names[0]], "data_offsets": [0, len(data) + 4096]}}
    overlap = dict(header)
    if len(names) > 1:
        overlap[names[1]] = {**header[names[1]], "data_offsets": header[names[0]]["data_offsets"]}
    return {
        "truncated": good[: len(good) // 2],
        "oversized-header": struct.pack("<Q", 2**40) + good[8:],
        "header-not-json": struct.pack("<Q", 16) + b"{not json at all" + data,
        "offsets-past-end": pack(past_end),
        "overlapping-offsets": pack(overlap),
        "empty": b"",
    }


def _rehash(ckpt: Path, name: str) -> None:
    """Make the manifest agree with a planted file, so the loader itself must refuse it
    (an attacker who can write the file can write the manifest too)."""
    manifest = json.loads((ckpt / "manifest.json").read_text())
    data = (ckpt / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))


def _copy_run(src: Path, name: str) -> Path:
    import shutil

    dst = fresh_dir(name) / "run"
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _entry_points() -> dict[str, Callable[[Path, bytes], tuple[Path, Callable[[], Any]]]]:
    """Where a hostile file can come in: name -> plant(run, payload) -> (file, load)."""
    from dlopt.deploy import OnnxModel
    from dlopt.train import load, read_checkpoint
    from dlopt.train.transfer import read_init_weights

    def checkpoint_file(name: str):
        def plant(run: Path, payload: bytes):
            ckpt = (run / "checkpoints" / "last").resolve()
            (ckpt / name).write_bytes(payload)
            _rehash(ckpt, name)
            return ckpt / name, lambda: read_checkpoint(run)
        return plant

    def run_weights(run: Path, payload: bytes):
        (run / "model.safetensors").write_bytes(payload)
        return run / "model.safetensors", lambda: load(run)

    def init_file(run: Path, payload: bytes):
        f = run.parent / "init.pt"
        f.write_bytes(payload)
        return f, lambda: read_init_weights(f)

    def onnx_file(run: Path, payload: bytes):
        f = run.parent / "model.onnx"
        f.write_bytes(payload)
        return f, lambda: OnnxModel.load(f)

    def predict_input(run: Path, payload: bytes):
        from dlopt.train.inputs_raw import read_raw_input  # what `dlopt predict RUN FILE` reads with

        f = run.parent / "input.npy"
        f.write_bytes(payload)
        return f, lambda: read_raw_input(f, (1, 28, 28))

    return {"checkpoint state.pt": checkpoint_file("state.pt"),
            "checkpoint model.safetensors": checkpoint_file("model.safetensors"),
            "run model.safetensors": run_weights, "transfer init_from": init_file,
            "onnx model": onnx_file, "predict input": predict_input}


def _refused(load: Callable[[], Any], f: Path) -> str | None:
    """None when ``load`` raised a one-line DloptError naming ``f``; else what happened."""
    from dlopt.errors import DloptError

    try:
        load()
    except DloptError as exc:
        msg = str(exc)
        if f.name not in msg or "\n" in msg:
            return f"error does not name {f.name} on one line: {msg!r}"
        return None
    except Exception as exc:  # noqa: BLE001 - any other exception is a crash for the user
        return f"{type(exc).__name__} instead of a clear error: {str(exc)[:200]}"
    return "accepted"


def _onnx_external_attacks(base: Path) -> tuple[int, list[str], bool]:
    """ONNX external data pointing at ``../x``, an absolute path and a symlink out of the
    model folder (built with the deployment tests' own helpers): each must be refused and
    the outside file must not be read (its access time, set older than its mtime so that
    relatime updates it on any read, must not move)."""
    from dlopt.deploy import OnnxModel
    from dlopt.errors import ModelError

    spec = importlib.util.spec_from_file_location("_deploy_runtime_tests", ROOT / "tests/deploy/test_runtime.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    failures: list[str] = []
    secret = base / "secret.bin"
    secret.write_bytes(helpers.W.tobytes())
    st = secret.stat()
    os.utime(secret, ns=(st.st_mtime_ns - 10**9, st.st_mtime_ns))
    secret.read_bytes()  # does this file system record reads at all?
    probe = secret.stat().st_atime_ns != st.st_mtime_ns - 10**9
    cases = 0
    for constant in (False, True):
        for attack, location in (("parent", "../secret.bin"), ("absolute", str(secret)), ("symlink", "link.bin")):
            cases += 1
            folder = base / f"{attack}-{int(constant)}"
            path = helpers._save_external(helpers._matmul_model(weight_in_constant=constant), folder)
            if attack == "symlink":
                os.symlink(secret, folder / "link.bin")
            helpers._relocate(path, location)
            st = secret.stat()
            os.utime(secret, ns=(st.st_mtime_ns - 10**9, st.st_mtime_ns))
            try:
                OnnxModel.load(path)
                failures.append(f"onnx external data {attack}: loaded")
            except ModelError as exc:
                if str(path) not in str(exc):
                    failures.append(f"onnx external data {attack}: error does not name the file: {exc}")
            if probe and secret.stat().st_atime_ns != st.st_mtime_ns - 10**9:
                failures.append(f"onnx external data {attack}: {secret} was read")
    return cases, failures, probe


_UNSAFE_CALLS = {"weights_only": False, "allow_pickle": True}


def unsafe_load_calls(src: Path = ROOT / "src" / "dlopt") -> list[str]:
    """Source locations that could unpickle: ``weights_only=False``, ``allow_pickle=True``,
    ``pickle.load(s)``, or ``torch.load`` without ``weights_only=True``."""
    found = []
    for f in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            kw = {k.arg: k.value for k in node.keywords}
            bad = any(isinstance(kw.get(k), ast.Constant) and kw[k].value is v for k, v in _UNSAFE_CALLS.items())
            bad |= name in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load")
            bad |= name.endswith("torch.load") and not (isinstance(kw.get("weights_only"), ast.Constant)
                                                        and kw["weights_only"].value is True)
            if bad:
                found.append(f"{f.relative_to(src.parent)}:{node.lineno} {ast.unparse(node)[:80]}")
    return found


def malicious_files() -> dict[str, Any]:
    """Every hostile file through every entry point that reads files: refused with one line
    naming the file, and no canary file created; plus the ONNX external-data attacks and a
    scan of the source for any call that could unpickle."""
    import torch

    from dlopt.train.checkpoint import weights_bytes

    run0 = reference_run(run_config())  # the interruption tests' reference: shared when cached
    base = fresh_dir("malicious")
    canary = base / "CANARY"
    payloads = {**_pickles(canary), **{f"safetensors-{k}": v for k, v in _safetensors_variants(
        weights_bytes({"a.weight": torch.ones(4, 4), "a.bias": torch.zeros(4)})).items()}}
    failures: list[str] = []
    cases = 0
    for entry, plant in _entry_points().items():
        run = _copy_run(run0, entry.replace(" ", "-").replace(".", "-"))
        for kind, payload in payloads.items():
            cases += 1
            f, load = plant(run, payload)
            problem = _refused(load, f)
            if problem:
                failures.append(f"{entry} / {kind}: {problem}")
            if canary.exists():
                failures.append(f"{entry} / {kind}: the pickle ran (canary created)")
                canary.unlink()
    onnx_cases, onnx_failures, atime_probe = _onnx_external_attacks(base)
    unsafe = unsafe_load_calls()
    failures += onnx_failures + [f"unsafe load call: {u}" for u in unsafe]
    return result(failures, cases=cases, entry_points=len(_entry_points()), payloads=len(payloads),
                  onnx_external_data_cases=onnx_cases, atime_probe=atime_probe,
                  canaries_created=sum("canary" in f for f in failures), unsafe_load_calls=len(unsafe))


# ---------------------------------------------------------------------------- 6. bad data
def _bomb_png(side: int = 40_000) -> bytes:
    """A valid-looking PNG header claiming ``side`` x ``side`` pixels in a few hundred bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


def _image_folder(root: Path, per_class: int = 8) -> dict[str, Path]:
    """Two classes of good 8x8 PNGs plus one file of each bad kind; returns kind -> file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), mode="L").save(root / c / f"{i}.png")
    good = (root / "cat" / "0.png").read_bytes()
    bad = _bad_paths(root)
    bad["zero-byte"].write_bytes(b"")
    bad["truncated"].write_bytes(good[:40])
    bad["wrong-extension"].write_text("this is text, not a png")
    bad["not-an-image"].write_text("notes")
    bad["decompression-bomb"].write_bytes(_bomb_png())
    Image.new("L", (9, 8)).save(bad["shape"])
    return bad


def _train_until_error(cfg: dict[str, Any], run: Path) -> tuple[str | None, bool]:
    """(DataError message or None, whether anything was trained before it)."""
    from dlopt.config import parse_config
    from dlopt.errors import DataError
    from dlopt.train import train_run

    try:
        train_run(parse_config(cfg), run_dir=run)
    except DataError as exc:
        return str(exc), (run / "checkpoints").exists() or (run / "metrics.jsonl").exists()
    return None, True


def bad_data() -> dict[str, Any]:
    """An image folder holding every kind of bad file, and npz label sets with -1 and C:
    policy "fail" stops before step 1 with one line naming a bad file; policy "skip" skips
    and counts exactly the bad files."""
    from dlopt.data import load_dataset

    base = fresh_dir("baddata")
    folder = base / "images"
    bad = _image_folder(folder)
    failures: list[str] = []
    train = {"epochs": 1, "batch_size": 8, "progress": False, "threads": 1}
    cfg = {"name": "bad", "data": {"name": f"imagefolder:{folder}", "val_fraction": 0.0},
           "model": {"name": "mlp"}, "train": train}
    msg, trained = _train_until_error(cfg, base / "fail")
    named = msg is not None and any(str(f) in msg for f in bad.values())
    if not named or trained or "\n" in (msg or ""):
        failures.append(f"imagefolder/fail: message {msg!r}, trained before failing {trained}")
    skipped = load_dataset(f"imagefolder:{folder}", bad_samples="skip", val_fraction=0.0)
    kept = len(skipped.train) + len(skipped.test)
    counted = _skipped_count(folder)
    if kept != 16 or counted != len(bad):
        failures.append(f"imagefolder/skip: kept {kept} of 16 good, counted {counted} of {len(bad)} bad")
    per_kind = {}
    for kind, f in bad.items():  # each kind alone must be named with its own reason
        one = fresh_dir(kind) / "images"
        for other, g in _image_folder(one).items():
            if other != kind:
                g.unlink()
        try:
            load_dataset(f"imagefolder:{one}")
            per_kind[kind] = "accepted"
        except Exception as exc:  # noqa: BLE001 - recorded and judged below
            per_kind[kind] = str(exc)
        if str(_bad_paths(one)[kind]) not in per_kind[kind]:
            failures.append(f"imagefolder/{kind}: {per_kind[kind][:200]}")
    for label in (-1, 3):
        p = base / f"labels{label}.npz"
        y = np.array([0, 1, 2] * 10)
        y[17] = label
        np.savez(p, x=np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32), y=y,
                 class_names=np.array(["a", "b", "c"]))
        cfg = {"name": "lab", "data": {"name": f"npz:{p}"}, "model": {"name": "mlp"}, "train": train}
        msg, trained = _train_until_error(cfg, base / f"lab{label}")
        if msg is None or str(p) not in msg or str(label) not in msg or trained:
            failures.append(f"labels {label}: message {msg!r}, trained before failing {trained}")
        per_kind[f"label {label}"] = msg
    return result(failures, bad_files=len(bad), skipped_counted=counted, good_kept=kept,
                  messages={k: (v or "")[:160] for k, v in per_kind.items()})


def _bad_paths(root: Path) -> dict[str, Path]:
    return {"zero-byte": root / "cat" / "zero.png", "truncated": root / "cat" / "trunc.png",
            "wrong-extension": root / "dog" / "text.png", "not-an-image": root / "dog" / "notes.txt",
            "decompression-bomb": root / "dog" / "bomb.png", "shape": root / "cat" / "wide.png"}


def _skipped_count(folder: Path) -> int | None:
    """How many files the "skip" policy reports skipping (its warning line)."""
    import logging
    import re

    from dlopt.data import load_dataset

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: records.append(rec.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("dlopt.data")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)  # the count is in a warning: hear it even when dlopt is quieted
    try:
        load_dataset(f"imagefolder:{folder}", bad_samples="skip", val_fraction=0.0)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    counts = [int(m.group(1)) for r in records if (m := re.search(r"skipped (\d+) bad image", r))]
    return counts[0] if counts else None
