"""Checkpoint files: atomic writes, a manifest with hashes, safe loading.

Layout of ``<run>/checkpoints/``::

    step-00000120-3fa2c1/     one complete checkpoint (never modified after it is named)
        model.safetensors     the model's weights (and buffers)
        ema.safetensors       any handler state that is a flat {name: tensor} mapping
        state.pt              optimizer, RNG, loader, counters, handler states:
                              tensors and primitives only, read with weights_only=True
        manifest.json         written last: step, epoch, sha256 + size of every file, meta
    last -> step-00000120-3fa2c1   symlinks, swapped atomically with os.replace
    best -> step-00000100-9b07de
    open -> step-00000117-c0ffee   a run that ``max_steps`` ended mid-epoch: the state before that
    open-best -> ...               epoch was closed, and ``best`` then (a raised budget resumes there)

A checkpoint is written into ``.tmp-<random>/`` (each file fsynced, the manifest last, the
directory fsynced), renamed to its final name, and only then is ``last`` repointed by
replacing the symlink (``rename(2)`` is atomic). An interrupted save therefore leaves the
previous ``last`` untouched; leftovers are removed by the next save. Loading checks every
file against the manifest, so a truncated or tampered file is a :class:`CheckpointError`
naming it. Nothing is ever unpickled beyond ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import random
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from dlopt.errors import DloptError, NonFiniteError, RunError, first_line

__all__ = [
    "CheckpointError", "Checkpoint", "atomic_write", "fsync_dir", "write_checkpoint",
    "point", "cleanup", "read_checkpoint", "read_meta", "state_bytes", "resolve_checkpoint", "weights_bytes",
    "weights_size", "load_weights",
    "rng_state", "set_rng_state", "assert_finite", "link_step", "MANIFEST", "WEIGHTS", "STATE", "OPEN",
    "OPEN_BEST",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
STATE = "state.pt"
FORMAT = 1
OPEN, OPEN_BEST = "open", "open-best"
LINKS = ("last", "best", OPEN, OPEN_BEST)


class CheckpointError(DloptError):
    """A checkpoint is missing, incomplete, truncated or tampered with."""


# ------------------------------------------------------------------------- atomic files
def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory entry (a rename inside it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_failed(path: Path, exc: OSError, kept: str) -> RunError:
    # a full disk or a file-size limit is a failed run (exit 1), not a traceback
    hint = " (disk full or file-size limit?)" if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
    return RunError(f"cannot write {path}: {exc.strerror or exc}{hint}; {kept}")


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, os.replace,
    fsync of the directory. Readers see the old or the new file, never a partial one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        _write_synced(tmp, data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError as exc:
        raise _write_failed(path, exc, "the previous file is kept") from None
    finally:
        # on a file system turned read-only the unlink fails too: the write's error is the one to show
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


# ------------------------------------------------------------------------------ weights
def weights_bytes(module: nn.Module | Mapping[str, torch.Tensor]) -> bytes:
    """A state dict as safetensors bytes (tied tensors are stored once per name)."""
    from safetensors.torch import save

    sd = module.state_dict() if isinstance(module, nn.Module) else module
    seen: set[tuple[int, int]] = set()
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        t = v.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        out[k] = t.clone() if key in seen else t  # safetensors refuses shared memory
        seen.add(key)
    return save(out)


# safetensors' header names of the dtypes it stores, in the order it writes them: the library
# sorts tensors by dtype, this order, then by name (a dtype not listed: weights_size serializes)
_SAFETENSORS_DTYPES = {dt: name for dt, name in (
    (getattr(torch, "uint64", None), "U64"), (torch.int64, "I64"), (torch.float64, "F64"),
    (torch.complex64, "C64"), (torch.float32, "F32"), (getattr(torch, "uint32", None), "U32"),
    (torch.int32, "I32"), (torch.bfloat16, "BF16"), (torch.float16, "F16"),
    (getattr(torch, "uint16", None), "U16"), (torch.int16, "I16"),
    (getattr(torch, "float8_e5m2fnuz", None), "F8_E5M2FNUZ"),
    (getattr(torch, "float8_e4m3fnuz", None), "F8_E4M3FNUZ"),
    (getattr(torch, "float8_e8m0fnu", None), "F8_E8M0"), (getattr(torch, "float8_e4m3fn", None), "F8_E4M3"),
    (getattr(torch, "float8_e5m2", None), "F8_E5M2"), (torch.int8, "I8"), (torch.uint8, "U8"),
    (torch.bool, "BOOL")) if dt is not None}
_DTYPE_RANK = {dt: i for i, dt in enumerate(_SAFETENSORS_DTYPES)}


def weights_size(module: nn.Module | Mapping[str, torch.Tensor]) -> int:
    """``len(weights_bytes(module))`` without copying a byte of data (nor from a GPU): 8 + the
    header safetensors writes (built from names, dtypes, shapes and offsets as the library
    builds it, padded with spaces to 8 bytes) + every tensor's bytes (tied ones once per name)."""
    sd = module.state_dict() if isinstance(module, nn.Module) else module
    if any(v.dtype not in _SAFETENSORS_DTYPES for v in sd.values()):
        return len(weights_bytes(sd))
    header: dict[str, Any] = {}
    offset = 0
    for name, v in sorted(sd.items(), key=lambda kv: (_DTYPE_RANK[kv[1].dtype], kv[0])):
        end = offset + v.numel() * v.element_size()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[v.dtype], "shape": list(v.shape),
                        "data_offsets": [offset, end]}
        offset = end
    size = len(json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode())
    return 8 + size + (-size) % 8 + offset


def load_weights(data: bytes, *, name: str = WEIGHTS) -> dict[str, torch.Tensor]:
    """Tensors from safetensors bytes; a bad file is a CheckpointError naming it."""
    from safetensors.torch import load

    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read weights file {name}: {first_line(exc)}") from None


def assert_finite(module: nn.Module, *, step: int) -> None:
    """Raise NonFiniteError naming the first parameter holding NaN/Inf (one sync)."""
    named = [(n, p) for n, p in module.named_parameters()]
    if not named:
        return
    peaks = torch.stack(torch._foreach_norm([p.detach() for _, p in named], float("inf")))
    if bool(torch.isfinite(peaks).all()):
        return
    bad = int((~torch.isfinite(peaks)).nonzero()[0])
    raise NonFiniteError(f"parameter {named[bad][0]!r} is non-finite at step {step}; checkpoint not written")


# ---------------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    """Every global RNG a step may draw from: torch (CPU + CUDA), numpy, python."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- write/read
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_checkpoint(root: str | os.PathLike, files: Mapping[str, bytes], *, step: int,
                     epoch: int, meta: Mapping[str, Any] | None = None) -> Path:
    """Write one complete checkpoint directory under ``root`` and return it. Files first,
    ``manifest.json`` last, then the directory is renamed into place (never partial)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:6]
    tmp = root / f".tmp-{token}"
    tmp.mkdir()
    try:
        for name, data in files.items():
            _write_synced(tmp / name, data)
        manifest = {
            "format": FORMAT, "step": step, "epoch": epoch,
            "files": {n: {"sha256": _sha256(d), "bytes": len(d)} for n, d in files.items()},
            "meta": dict(meta or {}),
        }
        _write_synced(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
        fsync_dir(tmp)
        final = root / f"step-{step:08d}-{token}"
        os.rename(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = "the previous checkpoint is kept" if (root / "last").exists() else "no checkpoint written yet"
        raise _write_failed(root / f"step-{step:08d}", exc, kept) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(root)
    return final


def point(root: str | os.PathLike, link: str, target: Path) -> None:
    """Atomically make ``root/link`` a symlink to ``target`` (a directory inside ``root``)."""
    root = Path(root)
    dest = root / link
    if dest.exists() and not dest.is_symlink():  # e.g. a run copied with symlinks resolved
        shutil.rmtree(dest)
    tmp = root / f".{link}.tmp-{uuid.uuid4().hex[:6]}"
    os.symlink(target.name, tmp)
    os.replace(tmp, dest)
    fsync_dir(root)


def link_step(root: str | os.PathLike, link: str) -> int | None:
    """The step of the checkpoint ``root/link`` points to (from its name), or None."""
    path = Path(root) / link
    return int(os.readlink(path).split("-")[1]) if path.is_symlink() else None


def cleanup(root: str | os.PathLike, links: tuple[str, ...] = LINKS) -> None:
    """Remove checkpoint directories no link points to, and leftovers of interrupted saves."""
    root = Path(root)
    keep = {os.readlink(root / n) for n in links if (root / n).is_symlink()}
    for p in root.iterdir():
        if p.name in links or p.name in keep:
            continue
        if p.name.startswith((".tmp-", "step-")) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(".") and ".tmp-" in p.name:
            p.unlink(missing_ok=True)


def resolve_checkpoint(path: str | os.PathLike, *, link: str = "last") -> Path:
    """The checkpoint directory for a run dir, a ``checkpoints/`` dir or a checkpoint dir."""
    p = Path(path)
    for cand in (p, p / "checkpoints" / link, p / link):
        if (cand / MANIFEST).is_file():
            return cand.resolve()
    if (p / "checkpoints").is_dir() or p.name == "checkpoints" or (p / STATE).exists():
        raise CheckpointError(f"no complete checkpoint at {p} (missing {link}/{MANIFEST})")
    raise CheckpointError(f"checkpoint not found: {p}")


@dataclass
class Checkpoint:
    """A verified checkpoint read back from disk."""

    path: Path
    manifest: dict[str, Any]
    weights: dict[str, torch.Tensor]
    tensors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # other *.safetensors
    state: dict[str, Any] = field(default_factory=dict)  # state.pt

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest.get("meta", {})

    @property
    def model_weights(self) -> dict[str, torch.Tensor]:
        """The weights the run evaluated and exports: the EMA copy when the run kept one."""
        if "ema" in self.tensors:
            return {k.removeprefix("module."): v for k, v in self.tensors["ema"].items() if k.startswith("module.")}
        return self.weights


def _read_verified(ckpt: Path, name: str, entry: Mapping[str, Any]) -> bytes:
    f = ckpt / name
    try:
        data = f.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file missing: {f}") from None
    if len(data) != entry.get("bytes") or _sha256(data) != entry.get("sha256"):
        raise CheckpointError(f"checkpoint file {f} is truncated or modified (sha256/size mismatch)")
    return data


def _read_manifest(ckpt: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((ckpt / MANIFEST).read_text())
        if not isinstance(manifest["files"], dict) or not isinstance(manifest.get("meta", {}), dict):
            raise TypeError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint manifest {ckpt / MANIFEST} is corrupted") from None
    return manifest


def read_meta(path: str | os.PathLike, *, link: str = "last") -> dict[str, Any]:
    """A checkpoint's ``meta`` (config, dataset info, ...) from its manifest, no weights read."""
    return dict(_read_manifest(resolve_checkpoint(path, link=link)).get("meta", {}))


def read_checkpoint(path: str | os.PathLike, *, link: str = "last", map_location: Any = "cpu",
                    weights_only: bool = False) -> Checkpoint:
    """Read and verify a checkpoint (``weights_only``: skip ``state.pt``)."""
    ckpt = resolve_checkpoint(path, link=link)
    manifest = _read_manifest(ckpt)
    files = manifest["files"]
    if WEIGHTS not in files:
        raise CheckpointError(f"checkpoint {ckpt} has no {WEIGHTS} in its manifest")
    weights = load_weights(_read_verified(ckpt, WEIGHTS, files[WEIGHTS]), name=str(ckpt / WEIGHTS))
    out = Checkpoint(ckpt, manifest, weights)
    if weights_only:
        return out
    for name, entry in files.items():
        if name == WEIGHTS:
            continue
        data = _read_verified(ckpt, name, entry)
        if name.endswith(".safetensors"):
            out.tensors[name.removesuffix(".safetensors")] = load_weights(data, name=str(ckpt / name))
        elif name == STATE:
            try:
                out.state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
            except Exception as exc:  # pickle/zip errors from a bad file
                raise CheckpointError(f"cannot read {ckpt / name}: {first_line(exc)}") from None
    return out


def state_bytes(obj: Any) -> bytes:
    """``torch.save`` of tensors and primitives into bytes (loadable with weights_only=True)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()
