"""The prediction server: FastAPI + uvicorn + ONNX Runtime, safe by default.

- Binds 127.0.0.1 unless told otherwise; serves only the local ONNX file given at start (no
  endpoint loads or replaces models); external-data paths are checked by :class:`OnnxModel`.
- Limits: body size (413 before reading it), batch size, shape, dtype, finiteness (422),
  malformed bodies (400), unsupported media (415), a bounded queue (503 + Retry-After),
  a request timeout (504: the server gave up, the input was not at fault).
- Inference runs in a thread pool so the event loop keeps answering health checks; an ORT
  error caused by an input is a 422, never a 500. Optional micro-batching groups requests.

FastAPI resolves route annotations at module level, so it is imported at the top here;
``dlopt.deploy`` itself loads this module only on first use.

Endpoints: ``POST /v1/predict``, ``GET /v1/health/live``, ``GET /v1/health/ready``,
``GET /v1/metadata``, ``GET /openapi.json``. Error bodies: ``{"error": code, "detail": text}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path, PureWindowsPath
from typing import Any, AsyncIterator, Callable, Iterator

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from dlopt.deploy._inputs import ApiError, InputSpec, PredictRequest, PredictResponse, decode_images, decode_json
from dlopt.deploy._limits import Admission, BodyLimitMiddleware, MicroBatcher
from dlopt.deploy._runtime import OnnxModel, postprocess
from dlopt.errors import ConfigError, DataError, RunError

__all__ = ["ServeSettings", "create_app", "open_model", "serve"]

log = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_RETRY_AFTER = {"Retry-After": "1"}
_JSON_TYPES = ("application/json",)
_IMAGE_TYPES = ("image/png", "image/jpeg")


@dataclass(frozen=True)
class ServeSettings:
    """Server limits. ``batch_wait_ms`` > 0 turns micro-batching on (groups of up to
    ``batch_max`` samples); ``threads`` is ORT's intra-op thread count (None: its default)."""

    max_body_mb: float = 8.0
    max_batch: int = 256
    max_queue: int = 64
    timeout_s: float = 10.0
    batch_wait_ms: float = 0.0
    batch_max: int = 64
    workers: int = 1
    threads: int | None = None

    def __post_init__(self) -> None:
        checks = {
            "max_body_mb": self.max_body_mb > 0, "max_batch": self.max_batch >= 1,
            "max_queue": self.max_queue >= 1, "timeout_s": self.timeout_s > 0,
            "batch_wait_ms": self.batch_wait_ms >= 0, "batch_max": self.batch_max >= 1,
            "workers": self.workers >= 1, "threads": self.threads is None or self.threads >= 1,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"serve setting {key}={getattr(self, key)!r} is invalid; allowed: a positive value")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


@dataclass
class _State:
    """What one app instance holds: the model, its limits, the pools, the ready flag."""

    model: OnnxModel
    settings: ServeSettings
    spec: InputSpec
    admission: Admission
    executor: ThreadPoolExecutor
    sha256: str
    batcher: MicroBatcher | None = None
    ready: bool = False


# ----------------------------------------------------------------------------- compute
def _model_inputs(state: _State, x_raw: np.ndarray) -> np.ndarray:
    """Saved preprocessing + a finiteness check of what reaches the model (worker thread)."""
    try:
        x = state.model.preprocess(x_raw)
    except DataError as exc:
        raise ApiError(422, "preprocess_failed", str(exc)) from None
    if not np.isfinite(x).all():
        raise ApiError(422, "non_finite", "inputs become NaN/Inf after preprocessing; allowed: finite values in range")
    return x


def _run_model(state: _State, x: np.ndarray, run_options: Any = None) -> np.ndarray:
    try:
        return state.model.run(x, run_options=run_options)
    except Exception as exc:  # noqa: BLE001  ORT errors on an input are the client's (4xx)
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ApiError(422, "model_rejected_input", f"ONNX Runtime rejected the input: {first}") from None


def _answer(state: _State, outputs: np.ndarray) -> dict[str, Any]:
    meta = state.model.metadata
    pred, proba = postprocess(outputs, meta.task)
    if not np.isfinite(pred).all() or (proba is not None and not np.isfinite(proba).all()):
        raise ApiError(422, "non_finite_output", "the model produced NaN/Inf for these inputs")
    if proba is None:
        return {"predictions": pred.astype(float).tolist()}
    out: dict[str, Any] = {"predictions": pred.astype(int).tolist(), "probabilities": proba.tolist()}
    if meta.class_names and len(meta.class_names) == proba.shape[1]:
        out["labels"] = [meta.class_names[i] for i in pred]
    return out


async def _infer(state: _State, x_raw: np.ndarray) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    x = await asyncio.to_thread(_model_inputs, state, x_raw)
    if state.batcher is not None:
        return _answer(state, await state.batcher.submit(x))
    import onnxruntime as ort

    options = ort.RunOptions()
    future = loop.run_in_executor(state.executor, _run_model, state, x, options)
    try:
        outputs = await future
    except asyncio.CancelledError:
        options.terminate = True  # the request timed out: stop ORT instead of finishing
        raise
    return _answer(state, outputs)


# ----------------------------------------------------------------------------- decoding
def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_inputs(request: Request, state: _State) -> np.ndarray:
    try:
        return await _decode(request, state)
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client closed the connection mid-body") from None


async def _body(request: Request) -> bytearray:
    # one growing buffer: Request.body() holds the chunks and their join (2x the body) at once
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
    return buf


async def _decode(request: Request, state: _State) -> np.ndarray:
    media = _media_type(request)
    if media in _JSON_TYPES:
        body = await _body(request)
        return await asyncio.to_thread(decode_json, body, state.spec)
    if media in _IMAGE_TYPES:
        body = await _body(request)
        return await asyncio.to_thread(decode_images, [body], state.spec)
    if media == "multipart/form-data":
        return await _read_multipart(request, state)
    allowed = ", ".join((*_JSON_TYPES, "multipart/form-data", *_IMAGE_TYPES))
    raise ApiError(415, "unsupported_media_type", f"Content-Type {media or 'none'!r}; allowed: {allowed}")


async def _read_multipart(request: Request, state: _State) -> np.ndarray:
    from starlette.datastructures import UploadFile

    if not state.spec.takes_images:
        raise ApiError(415, "not_an_image_model",
                       f"this model takes inputs of shape {state.spec.raw_shape}, not images; send JSON")
    try:
        form = await request.form(max_files=state.settings.max_batch, max_fields=16)
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001  python-multipart/starlette parse errors
        raise ApiError(400, "bad_multipart", f"multipart body cannot be parsed ({type(exc).__name__})") from None
    try:
        items = form.multi_items()
        stray = next((k for k, v in items if k != "image" or not isinstance(v, UploadFile)), None)
        if stray is not None:  # a misnamed field would be dropped, answering for fewer images
            raise ApiError(422, "bad_request", f"multipart field {stray!r} is not an image file; "
                           "allowed: one or more files in fields named 'image'")
        data = [await v.read() for _, v in items]
    finally:
        await form.close()
    return await asyncio.to_thread(decode_images, data, state.spec)


# ---------------------------------------------------------------------------------- app
_PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["image"],
            "properties": {"image": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        }},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    },
}
_ERROR_SCHEMA = {"content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}}}}}
_PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": PredictResponse},
    **{code: {"description": text, **_ERROR_SCHEMA} for code, text in (
        (400, "malformed body"), (413, "body too large"), (415, "unsupported media type"),
        (422, "invalid inputs"), (503, "queue full or not ready (Retry-After)"), (504, "timed out"))},
}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _input_spec(model: OnnxModel, max_batch: int) -> InputSpec:
    """The requests ``model`` takes: its text columns and whether it imputes missing values."""
    pre = model.preprocessor
    return InputSpec(tuple(model.metadata.raw_shape), max_batch,
                     categories=pre.categories if pre is not None else {}, missing=model.imputes,
                     columns=tuple(getattr(pre, "feature_names", ())))


def _public_metadata(model: OnnxModel) -> dict[str, Any]:
    """``/v1/metadata``'s model facts without the server's file system (a client learns no
    paths): ``source_run`` is the run folder's name, the dataset's file its name only
    (``csv:rows.csv``), ``data_dir`` is left out."""
    from dlopt.data._registry import split_format

    out = model.metadata.public()
    # PureWindowsPath splits at both / and \: a file exported on Windows shows its name too
    out["source_run"] = PureWindowsPath(out["source_run"]).name
    dataset = {k: v for k, v in (out.get("dataset") or {}).items() if k != "data_dir"}
    fmt = split_format(dataset["name"]) if isinstance(dataset.get("name"), str) else None
    if fmt is not None:
        dataset["name"] = f"{fmt[0]}:{PureWindowsPath(fmt[1]).name}"
    out["dataset"] = dataset
    return out


def create_app(model: OnnxModel, settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI app serving ``model``; ready once a warm-up inference has run. JSON rows of a
    model that label-encodes text columns hold strings in those columns."""
    cfg = settings or ServeSettings()
    state = _State(
        model=model, settings=cfg,
        spec=_input_spec(model, cfg.max_batch),
        admission=Admission(cfg.max_queue),
        executor=ThreadPoolExecutor(cfg.workers, thread_name_prefix="dlopt-ort"),
        sha256=_file_sha256(model.path),
    )
    if cfg.batch_wait_ms > 0:
        state.batcher = MicroBatcher(lambda x: _run_model(state, x), cfg.batch_max,
                                     cfg.batch_wait_ms / 1000.0, state.executor)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_warm_up(state))]
        if state.batcher is not None:
            tasks.append(asyncio.create_task(state.batcher.run_forever()))
        try:
            yield
        finally:
            state.ready = False
            for task in tasks:
                task.cancel()
            state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="dlopt prediction server", version=model.metadata.dlopt_version or "0",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.dlopt = state
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes)

    def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Any:
        return error(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Any:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Any:
        return error(422, "bad_request", str(exc.errors()[0].get("msg", "invalid request")))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Any:
        log.exception("internal error on %s", request.url.path)
        return error(500, "internal", "internal server error")

    @app.get("/v1/health/live")
    async def live() -> dict[str, str]:
        """200 while the process runs."""
        return {"status": "live"}

    @app.get("/v1/health/ready", responses={503: {"description": "model not ready yet"}})
    async def ready() -> Any:
        """200 once the model is loaded and warmed up, else 503."""
        if not state.ready:
            return error(503, "not_ready", "the model is loading", _RETRY_AFTER)
        return {"status": "ready"}

    @app.get("/v1/metadata")
    async def metadata() -> dict[str, Any]:
        """The served model's metadata (no server paths), file hash and this server's limits."""
        return {"model": _public_metadata(model), "file": model.path.name, "sha256": state.sha256,
                "input": {"name": model.input_name, "raw_shape": list(state.spec.raw_shape),
                          "takes_images": state.spec.takes_images,
                          "text_columns": sorted(state.spec.categories), "takes_missing": state.spec.missing},
                "limits": asdict(cfg)}

    @app.post("/v1/predict", openapi_extra={"requestBody": _PREDICT_BODY}, responses=_PREDICT_RESPONSES)
    async def predict(request: Request) -> Any:
        """Predict from raw inputs: JSON lists, base64 .npy, or PNG/JPEG images."""
        if not state.ready:
            raise ApiError(503, "not_ready", "the model is loading", _RETRY_AFTER)
        if not state.admission.try_enter():
            raise ApiError(503, "queue_full", f"{cfg.max_queue} requests already in progress; retry later",
                           _RETRY_AFTER)
        try:
            async with asyncio.timeout(cfg.timeout_s):
                x_raw = await _read_inputs(request, state)
                return JSONResponse(await _infer(state, x_raw))
        except TimeoutError:
            raise ApiError(504, "timeout", f"the request took longer than {cfg.timeout_s:g} s") from None
        finally:
            state.admission.leave()

    return app


async def _warm_up(state: _State) -> None:
    x = np.zeros((1, *state.model.input_shape), dtype=np.float32)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(state.executor, state.model.run, x)
    except Exception:  # noqa: BLE001  stay not-ready: /v1/health/ready keeps answering 503
        log.exception("warm-up inference of %s failed; the server stays not ready", state.model.path.name)
        return
    state.ready = True
    log.info("model %s ready", state.model.path.name)


def open_model(path: str | os.PathLike, settings: ServeSettings) -> OnnxModel:
    """The served model's ONNX Runtime session: ``settings.threads`` intra-op threads and no
    memory plan per input shape, since requests come at every batch size (1 .. max_batch)
    and the plans would add up (~25 MiB for LeNet-5; docs/reliability.md)."""
    _refuse_directory(Path(path))
    return OnnxModel.load(path, threads=settings.threads, mem_pattern=False)


def _refuse_directory(path: Path) -> None:
    """A directory (a training run's, most likely) is not a model file: say which file to serve,
    where the loader would call it "not found"."""
    if not path.is_dir():
        return
    files = sorted(str(f) for f in path.glob("*.onnx"))
    if files:
        raise ConfigError(f"{path} is a directory; serve one of its .onnx files: {', '.join(files)}")
    if (path / "summary.json").is_file() or (path / "config.yaml").is_file():
        raise ConfigError(f"{path} is a training run directory; serve takes an .onnx file: export it first "
                          f"(dlopt export {path} --out {path / 'model.onnx'}) and serve that file")
    raise ConfigError(f"{path} is a directory; allowed: a local .onnx file (dlopt export)")


def serve(path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000,
          settings: ServeSettings | None = None, log_level: str = "warning",
          on_start: Callable[[str], None] | None = None) -> None:
    """Load ``path`` (a local .onnx file) and serve it with uvicorn until interrupted.
    ``on_start(url)`` runs once the server listens; with ``port`` 0 the URL holds the port
    the OS picked."""
    from uvicorn.config import LOG_LEVELS

    if log_level not in LOG_LEVELS:
        raise ConfigError(f"--log-level {log_level!r} is unknown; allowed: {', '.join(LOG_LEVELS)}")
    cfg = settings or ServeSettings()
    app = create_app(open_model(path, cfg), cfg)
    _check_listen(host, port)
    if host not in _LOOPBACK:
        log.warning("binding %s: the server is reachable from other machines", host)
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False,
        server_header=False, proxy_headers=False, timeout_keep_alive=5,
        timeout_graceful_shutdown=int(max(cfg.timeout_s, 1)),
    )
    server = _Server(config, on_start)
    with _clean_stop():
        server.run()
    log.info("server stopped")


class _Server(uvicorn.Server):
    """uvicorn's server, telling ``on_start`` the URL it listens on (its real port)."""

    def __init__(self, config: uvicorn.Config, on_start: Callable[[str], None] | None) -> None:
        super().__init__(config)
        self.on_start = on_start

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.on_start is not None and self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            self.on_start(f"http://{f'[{host}]' if ':' in host else host}:{port}")


def _check_listen(host: str, port: int) -> None:
    """One line instead of uvicorn's exit code 3: an unknown host (exit 2), a port in use (1)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--host {host!r}: cannot resolve it ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise RunError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class _Stopped(Exception):
    """SIGINT/SIGTERM after uvicorn's graceful shutdown: a normal end, not an interruption."""


@contextlib.contextmanager
def _clean_stop() -> Iterator[None]:
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the
    # handlers it found; ours turn it into a normal return (exit code 0)
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise _Stopped()

    saved = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Stopped:
        pass
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
