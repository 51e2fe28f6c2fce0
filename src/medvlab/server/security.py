"""Protections of the server: API keys, request-size limit, and bounded concurrency with a queue."""

from __future__ import annotations

import collections
import contextlib
import hmac
import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medvlab.errors import ClientGoneError, OverloadedError
from medvlab.services.inputs import mib

PUBLIC_PATHS = ("/healthz",)
API_PREFIXES = ("/v1", "/docs", "/openapi.json", "/redoc")


def key_ok(presented: str | None, keys: list[str]) -> bool:
    return presented is not None and any(hmac.compare_digest(presented, k) for k in keys)


async def _json(
    send: Send, status: int, message: str, code: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": code}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """With keys configured, every API route but /healthz needs one (the web UI has its own login)."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app, self.keys = app, keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path in PUBLIC_PATHS or not path.startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        presented = auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("x-api-key")
        if not key_ok(presented, self.keys):
            await _json(
                send,
                401,
                "A valid API key is required. Fix: send 'Authorization: Bearer <key>' "
                "with one of the keys in MEDVLAB_API_KEYS.",
                "Unauthorized",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse request bodies above ``max_bytes`` with 413, by Content-Length or while they stream in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        fix = f"Send at most {mib(self.max_bytes)} (MEDVLAB_MAX_UPLOAD_MB raises the limit)."
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _json(
                send, 413, f"The request body is {mib(int(length))}. Fix: {fix}", "ImageTooLargeError"
            )
            return
        received = 0
        too_big = False

        async def limited() -> Message:
            nonlocal received, too_big
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_big = True
                    return {"type": "http.disconnect"}
            return message

        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_big and not started:
                started = True
                await _json(send, 413, f"The request body is too large. Fix: {fix}", "ImageTooLargeError")
                return
            if not too_big:
                started = started or message["type"] == "http.response.start"
                await send(message)

        await self.app(scope, limited, guarded_send)


class Admission:
    """At most ``concurrency`` generations at once and ``queue`` waiting; the rest get 429 at once.

    Thread-based (generation runs in worker threads): ``acquire()`` blocks while queued, up to ``timeout``,
    and gives up as soon as ``cancel`` is set (the client went away). ``Retry-After`` is computed from the
    measured time a request holds its slot (an exponential moving average), ``seconds_per_request`` being
    only the first guess before anything was measured.
    """

    POLL_S = 0.1
    """How often a queued request checks whether its client is still there."""

    def __init__(
        self, concurrency: int, queue: int, timeout: float, seconds_per_request: float = 10.0
    ) -> None:
        self.concurrency, self.queue, self.timeout = concurrency, queue, timeout
        self.seconds_per_request = seconds_per_request
        self.measured = 0
        self.active = 0
        self.waiting = 0
        self._cond = threading.Condition()

    def state(self) -> dict[str, int]:
        with self._cond:
            return {
                "active": self.active,
                "queued": self.waiting,
                "capacity": self.concurrency,
                "queue_limit": self.queue,
            }

    def observe(self, seconds: float) -> None:
        """Fold one request's time in its slot into the estimate behind ``Retry-After``."""
        with self._cond:
            if self.measured == 0:
                self.seconds_per_request = seconds
            else:
                self.seconds_per_request = 0.7 * self.seconds_per_request + 0.3 * seconds
            self.measured += 1

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead of a new request, at the measured pace."""
        ahead = self.waiting + 1
        return max(1, math.ceil(self.seconds_per_request * ahead / self.concurrency - 1e-9))

    def try_acquire(self) -> bool:
        """Take a free slot now if one is free and nobody is queued before this request (no wait)."""
        with self._cond:
            if self.active < self.concurrency and self.waiting == 0:
                self.active += 1
                return True
            return False

    def acquire(self, cancel: threading.Event | None = None) -> None:
        with self._cond:
            if self.active >= self.concurrency and self.waiting >= self.queue:
                retry = self.retry_after()
                raise OverloadedError(
                    f"The lab is busy: {self.active} generation(s) running and {self.waiting} waiting.",
                    f"Retry after {retry} s (MEDVLAB_MAX_CONCURRENCY / MEDVLAB_MAX_QUEUE raise the limits).",
                    retry,
                )
            self.waiting += 1
            try:
                deadline = time.monotonic() + self.timeout
                while self.active >= self.concurrency:
                    if cancel is not None and cancel.is_set():
                        raise ClientGoneError(
                            "The client left while its request was queued; it was dropped.",
                            "Keep the connection open until the answer arrives.",
                        )
                    left = deadline - time.monotonic()
                    if left <= 0:
                        retry = self.retry_after()
                        raise OverloadedError(
                            "Waited too long for a free slot.", f"Retry after {retry} s.", retry
                        )
                    self._cond.wait(min(left, self.POLL_S))
                self.active += 1
            finally:
                self.waiting -= 1

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify()

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


def timed_cancel(seconds: float, event: threading.Event | None = None) -> tuple[threading.Event, Any]:
    """An event that sets itself after ``seconds`` (the generation timeout) and the timer to cancel."""
    event = event if event is not None else threading.Event()
    timer = threading.Timer(seconds, event.set)
    timer.daemon = True
    timer.start()
    return event, timer


_DONE = object()


class Guard:
    """One admitted request: a slot, a timeout, a cancel event; the slot is released exactly once.

    ``cancel`` is set when the client goes away (see :mod:`medvlab.server.deps`), when the timeout
    passes, or when the guard is released; generation checks it between tokens. ``stream(it)`` feeds a
    streaming response from a worker thread and closes the generator however the stream ends.
    """

    def __init__(
        self,
        admission: Admission,
        timeout: float,
        cancel: threading.Event | None = None,
        acquired: bool = False,
    ) -> None:
        """``acquired``: the caller already holds the slot (``Admission.try_acquire``)."""
        if not acquired:
            admission.acquire(cancel)
        self._admission = admission
        self._started = time.monotonic()
        self.cancel, self._timer = timed_cancel(timeout, cancel)
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._timer.cancel()
        self.cancel.set()
        self._admission.observe(time.monotonic() - self._started)
        self._admission.release()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def stream(self, it: Iterator[str]) -> Any:
        """Relay ``it`` (blocking: tokens come from a worker) to the event loop. One pump thread per
        stream pushes pieces onto the loop, and all pieces waiting at a wake-up go out as one write:
        a thread hop per token (``to_thread.run_sync(next)``) capped concurrent streams at anyio's
        40 worker threads and cost a loop round-trip per token."""
        import asyncio

        import anyio
        import anyio.to_thread

        loop = asyncio.get_running_loop()
        pieces: collections.deque[Any] = collections.deque()  # appended by the pump, emptied by the loop
        ready = asyncio.Event()
        wake = threading.Lock()
        woken = False  # a wake-up is on its way: pieces put meanwhile ride along without another one

        def put(item: Any) -> None:
            nonlocal woken
            pieces.append(item)
            with wake:
                if woken:
                    return
                woken = True
            with contextlib.suppress(RuntimeError):  # the loop is gone (server shutting down)
                loop.call_soon_threadsafe(ready.set)

        def pump() -> None:
            try:
                for item in it:
                    put(item)
                    if self.cancel.is_set():
                        break
            except BaseException as exc:  # raised on the loop's side, where the response is
                put(_Failed(exc))
            finally:
                with contextlib.suppress(Exception):
                    getattr(it, "close", lambda: None)()
                put(_DONE)

        pump_thread = threading.Thread(target=pump, name="medvlab-stream", daemon=True)
        pump_thread.start()
        try:
            done = False
            while not done:
                await ready.wait()
                with wake:
                    woken = False
                    ready.clear()
                batch = [pieces.popleft() for _ in range(len(pieces))]
                out: list[str] = []
                for item in batch:
                    if item is _DONE:
                        done = True
                    elif isinstance(item, _Failed):
                        if out:
                            yield "".join(out)
                        raise item.error
                    else:
                        out.append(item)
                if out:
                    yield "".join(out)
        finally:
            self.cancel.set()  # a client that went away stops its generation
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(pump_thread.join)
            self.release()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def bind_host(host: str, api_keys: list[str]) -> tuple[str, str | None]:
    """The interface to bind: without API keys only loopback, and a line saying why when that changed."""
    if api_keys or host in LOOPBACK or host.startswith("127."):
        return host, None
    return "127.0.0.1", (
        f"No API key is configured, so the lab listens on 127.0.0.1 only (not {host}). "
        "Set MEDVLAB_API_KEYS='[\"<key>\"]' to serve other machines."
    )
