"""Server guards: a body-size limit enforced while streaming, a bounded admission counter,
and the micro-batcher that groups validated requests into one ONNX Runtime call."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import numpy as np

from dlopt.deploy._inputs import ApiError

__all__ = ["BodyLimitMiddleware", "Admission", "MicroBatcher"]

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _send_error(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """ASGI middleware: 413 for a body over ``max_bytes``, without reading it.

    A declared ``Content-Length`` over the limit is refused before the first body byte is
    read; a chunked (or lying) body is counted as it streams and the read fails with 413 as
    soon as the count passes the limit.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    def _too_large(self) -> str:
        return f"request body exceeds the limit of {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope.get("headers", []) if k == b"content-length"]
        if declared:
            text = declared[0].decode("latin-1").strip()
            if not text.isdigit():
                await _send_error(send, 400, "bad_content_length", f"Content-Length {text!r} is not a number")
                return
            if int(text) > self.max_bytes:
                await _send_error(send, 413, "body_too_large", self._too_large())
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(413, "body_too_large", self._too_large())
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except ApiError as exc:  # raised outside the app's own handlers
            if started or exc.status != 413:
                raise
            await _send_error(send, exc.status, exc.code, exc.detail)


class Admission:
    """Counts prediction requests in progress (waiting or running); refuses past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.active = 0

    def try_enter(self) -> bool:
        # the event loop is single-threaded: check-and-increment cannot interleave
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future[np.ndarray]


@dataclass
class MicroBatcher:
    """Group requests for up to ``max_wait_s`` or ``max_batch`` samples into one model call.

    Requests are validated and preprocessed before they are submitted, so a batch holds only
    well-formed inputs; if the grouped call still fails, each request is retried alone so an
    error stays with the request that caused it. Requests cancelled (timed out) while waiting
    are dropped from their batch.
    """

    run: Callable[[np.ndarray], np.ndarray]
    max_batch: int
    max_wait_s: float
    executor: Any = None
    _items: deque[_Item] = field(default_factory=deque)
    _samples: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _full: asyncio.Event = field(default_factory=asyncio.Event)

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """Model outputs for ``x`` (N rows in, N rows out)."""
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._items.append(_Item(x, future))
        self._samples += len(x)
        self._arrived.set()
        if self._samples >= self.max_batch:
            self._full.set()
        return await future

    def _take(self) -> list[_Item]:
        batch = [self._items.popleft()]
        n = len(batch[0].x)
        while self._items and n + len(self._items[0].x) <= self.max_batch:
            batch.append(self._items.popleft())
            n += len(batch[-1].x)
        self._samples -= n
        return [i for i in batch if not i.future.done()]

    async def run_forever(self) -> None:
        """The batching loop (a task for the server's lifetime)."""
        while True:
            while not self._items:
                self._arrived.clear()
                await self._arrived.wait()
            if self._samples < self.max_batch:
                self._full.clear()
                try:
                    await asyncio.wait_for(self._full.wait(), self.max_wait_s)
                except TimeoutError:
                    pass
            batch = self._take()
            if batch:
                await self._run(batch)

    async def _call(self, x: np.ndarray) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.run, x)

    async def _run(self, batch: list[_Item]) -> None:
        try:
            out = await self._call(np.concatenate([i.x for i in batch]))
        except Exception:  # noqa: BLE001  isolate: retry each request on its own below
            log.warning("a batch of %d requests failed; retrying them one by one", len(batch))
            for item in batch:
                await self._run_one(item)
            return
        start = 0
        for item in batch:
            n = len(item.x)
            if not item.future.done():
                item.future.set_result(out[start:start + n])
            start += n

    async def _run_one(self, item: _Item) -> None:
        try:
            out = await self._call(item.x)
        except Exception as exc:  # noqa: BLE001  handed to the request that caused it
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if not item.future.done():
            item.future.set_result(out)
