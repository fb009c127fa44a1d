"""Load a local ONNX file safely and run it with ONNX Runtime.

Safety: the file is read once; every tensor stored as external data must name a regular file
inside the model's own directory (no absolute path, no ``..``, no symlink leading out, no ORT
in-memory address tag) before anything is handed to ONNX Runtime. A self-contained model is
passed to ORT as the very bytes that were checked, so the file cannot change in between.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable, Iterator

import numpy as np

from dlopt.deploy._metadata import ModelMetadata
from dlopt.errors import DataError, ModelError, first_line
from dlopt.train import class_probabilities

__all__ = ["OnnxModel", "check_external_data", "postprocess", "predict_onnx", "session_options"]

log = logging.getLogger(__name__)

# protobuf cannot hold more than 2 GiB in one message
_PROTO_LIMIT = 2**31 - 1
# ORT reads "external data" at a raw memory address when it sees this tag
_ORT_MEM_TAG = "_ORT_MEM_ADDR_"


def session_options(threads: int | None = None, *, mem_pattern: bool = True) -> Any:
    """ORT options: ``threads`` intra-op threads (None: ORT's default), one inter-op thread.

    ``mem_pattern=False`` turns off ORT's memory plan per input shape: each new batch size
    keeps a plan of its own, which a server seeing every batch size pays for in memory
    (~25 MiB over batch sizes 1-256, ``bench/ort_mem_pattern.py``) to save ~1 us a run.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.enable_mem_pattern = mem_pattern
    opts.log_severity_level = 3  # errors only; ORT warns about unused initializers otherwise
    return opts


def _graph_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers, sparse ones, and those inside attributes
    and subgraphs (Loop/If/Scan bodies), recursively."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from _graph_tensors(sub)


def _model_tensors(proto: Any) -> Iterator[Any]:
    yield from _graph_tensors(proto.graph)
    for fn in proto.functions:
        for node in fn.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def _unsafe_reason(location: str, base: Path) -> str | None:
    """Why ``location`` may not be read as external data of a model in ``base`` (None: fine)."""
    if not location or "\x00" in location:
        return "is empty or holds a NUL byte"
    if _ORT_MEM_TAG in location:
        return "is an ORT memory-address tag"
    if (PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute()
            or PureWindowsPath(location).drive or location.startswith(("\\", "/"))):
        return "is absolute"
    parts = PureWindowsPath(location).parts  # splits on both / and \
    if ".." in parts:
        return "contains '..'"
    root = os.path.realpath(base)
    target = os.path.realpath(base / location)
    if os.path.commonpath([root, target]) != root:
        return f"resolves outside the model directory (to {target})"
    if not os.path.isfile(target):
        return "is not a regular file in the model directory"
    return None


def check_external_data(proto: Any, model_path: str | os.PathLike) -> list[str]:
    """Raise ModelError unless every external-data location stays inside the model's directory.

    Returns the distinct locations used (empty for a self-contained model).
    """
    path = Path(model_path)
    base = path.resolve().parent
    seen: list[str] = []
    import onnx

    for tensor in _model_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        reason = _unsafe_reason(location, base)
        if reason is not None:
            raise ModelError(
                f"{path}: tensor {tensor.name!r} external data location {location!r} {reason}; "
                f"allowed: a relative path to a file inside {base}"
            )
        if location not in seen:
            seen.append(location)
    return seen


def postprocess(outputs: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Model outputs -> ``(pred, proba)``: class ids + probabilities as training scores them
    (``class_probabilities``; Inf logits give NaN rows, the caller checks), or regression
    values + None."""
    out = np.asarray(outputs, dtype=np.float64)
    if task == "regression":
        return out.reshape(len(out), -1)[:, 0], None
    proba = class_probabilities(out)
    return proba.argmax(axis=1), proba


@dataclass
class OnnxModel:
    """An ONNX Runtime session plus the dlopt metadata of its file. Build with :meth:`load`."""

    session: Any
    metadata: ModelMetadata
    path: Path
    input_name: str
    output_name: str

    @classmethod
    def load(cls, path: str | os.PathLike, *, threads: int | None = None,
             mem_pattern: bool = True) -> "OnnxModel":
        """Load a local ``.onnx`` file after checking its external-data paths (``threads``,
        ``mem_pattern``: see :func:`session_options`)."""
        import onnx
        import onnxruntime as ort

        p = Path(path)
        if not p.is_file():
            raise ModelError(f"model file {p} not found (a local .onnx file is required)")
        data = p.read_bytes()
        try:
            proto = onnx.load_model_from_string(data)
        except Exception as exc:  # protobuf raises its own DecodeError type
            raise ModelError(f"{p} is not a valid ONNX file ({type(exc).__name__})") from None
        external = check_external_data(proto, p)
        options = session_options(threads, mem_pattern=mem_pattern)
        try:
            if external or len(data) > _PROTO_LIMIT:
                # checked above; ORT resolves the side files relative to the model path
                session = ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
            else:
                session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT's pybind errors share no public base class
            raise ModelError(f"{p}: ONNX Runtime cannot load the model ({first_line(exc)})") from None
        props = {e.key: e.value for e in proto.metadata_props}
        meta = ModelMetadata.from_props(props, where=str(p))
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(f"{p}: the model has {len(inputs)} inputs; allowed: exactly 1")
        if not meta.input_shape:
            meta = meta.replace(input_shape=_static_shape(inputs[0].shape, p),
                                raw_shape=_static_shape(inputs[0].shape, p))
        log.info("loaded %s (%d bytes, external data: %s)", p, len(data), external or "none")
        return cls(session, meta, p, inputs[0].name, outputs[0].name)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One model input sample (no batch axis)."""
        return self.metadata.input_shape

    def run(self, x: np.ndarray, *, run_options: Any = None) -> np.ndarray:
        """Raw model outputs for a float32 batch ``(N, *input_shape)``."""
        batch = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch}, run_options)[0]

    def run_batches(self, batches: Iterable[np.ndarray]) -> np.ndarray:
        """Raw model outputs of every batch in turn, concatenated (one row per sample)."""
        return np.concatenate([self.run(x) for x in batches])

    @functools.cached_property
    def preprocessor(self) -> Any:
        """The saved ``Preprocessor``, or None when the model takes inputs as they are."""
        return self.metadata.preprocessor()

    @property
    def imputes(self) -> bool:
        """True when the saved preprocessing fills missing raw values (``Preprocessor.imputes``)."""
        return self.preprocessor is not None and self.preprocessor.imputes

    def preprocess(self, x_raw: np.ndarray) -> np.ndarray:
        """Apply the saved preprocessing (identity when none was saved)."""
        pre = self.preprocessor
        x = np.asarray(x_raw)
        if pre is None:
            return x.astype(np.float32, copy=False)
        try:
            return pre.transform(x)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{self.path}: preprocessing failed on input of shape {x.shape} ({exc})") from None

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(pred, proba|None)`` for already-preprocessed inputs."""
        return postprocess(self.run(x), self.metadata.task)

    def predict_raw(self, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(pred, proba|None)`` for raw inputs, applying the saved preprocessing."""
        x = _as_raw_batch(np.asarray(x_raw), tuple(self.metadata.raw_shape or ()), self.path)
        from dlopt.train.inputs_raw import check_finite

        return self.predict(check_finite(np.asarray(self.preprocess(x), dtype=np.float32)))


def _as_raw_batch(x: np.ndarray, raw: tuple[int, ...], path: Path) -> np.ndarray:
    """``x`` as ``(N, *raw)``: one sample, or rows holding a sample each in another layout
    (CSV rows of 784 pixels for (1, 28, 28)), as ``dlopt predict RUN`` takes them.
    Channels-last images ``(N, H, W, C)`` or ``(H, W, C)`` are transposed, not reshaped."""
    from dlopt.data import channels_first

    x = channels_first(x, raw)  # a reshape would scramble the pixels of a channels-last array
    if not raw or x.shape[1:] == raw:
        return x
    per = int(np.prod(raw))
    if x.shape == raw or (x.size == per and x.ndim < len(raw) + 1):
        return x.reshape(1, *raw)
    if x.ndim >= 2 and int(np.prod(x.shape[1:])) == per:
        return x.reshape(len(x), *raw)
    raise DataError(f"{path}: input shape {x.shape} is invalid; allowed: (N, {', '.join(map(str, raw))}) "
                    f"or N rows of {per} values")


def _static_shape(dims: list[Any], path: Path) -> tuple[int, ...]:
    rest = dims[1:]
    if not all(isinstance(d, int) for d in rest):
        raise ModelError(f"{path}: input shape {dims} has dynamic non-batch axes; allowed: only a dynamic batch axis")
    return tuple(rest)


def predict_onnx(path: str | os.PathLike, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict with an exported model from raw inputs, applying the preprocessing stored in it.

    Returns ``(pred, proba)``: class ids and softmax probabilities, or regression values and
    None. This is what ``dlopt predict MODEL.onnx`` calls.
    """
    return OnnxModel.load(path).predict_raw(x_raw)
