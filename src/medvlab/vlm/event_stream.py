"""The engine's streamed answer (server-sent events) read over urllib3.

Every token the lab relays from an engine passes through here, so this path is kept lean: urllib3 over the
standard library's ``http.client`` cost about 185 µs of CPU per event against 335 µs for httpx over h11
(pure-Python HTTP parsing), measured on loopback with 128-token answers (``benchmarks/serve_bench.py`` has
the lab's CPU per token). The control calls (models, adapters) stay on httpx. The SSE framing handled here
is only ``data:`` lines; OpenAI-compatible engines send nothing else that the lab needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import urllib3

READ_SIZE = 65536


class EventStreams:
    """POSTs to one engine whose answers are read as they stream; connections are kept alive and shared.

    The environment's ``HTTP(S)_PROXY`` / ``NO_PROXY`` are honoured, as httpx (the lab's other client) does.
    """

    def __init__(self, base_url: str, headers: dict[str, str], connect_s: float, read_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {**headers, "Content-Type": "application/json", "Accept": "text/event-stream"}
        self.timeout = urllib3.Timeout(connect=connect_s, read=read_s)
        parts = urlsplit(self.base_url)
        proxy = urllib.request.getproxies().get(parts.scheme or "http")
        if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
            self.pool: urllib3.PoolManager = urllib3.ProxyManager(proxy, maxsize=64)
        else:
            self.pool = urllib3.PoolManager(maxsize=64)

    def post(self, path: str, body: dict[str, Any]) -> urllib3.BaseHTTPResponse:
        """Send ``body`` and return once the answer's headers are in (raises urllib3's errors)."""
        data = json.dumps(body).encode()
        try:
            return self._send(path, data)
        except urllib3.exceptions.ProtocolError:
            # A kept-alive connection the engine closed while it was idle (uvicorn after 5 s), between
            # urllib3's liveness check and the request, ends before any answer: once more, on another
            # connection. Timeouts and refused connections are not repeated.
            return self._send(path, data)

    def _send(self, path: str, data: bytes) -> urllib3.BaseHTTPResponse:
        return self.pool.request(
            "POST",
            self.base_url + path,
            body=data,
            headers=self.headers,
            timeout=self.timeout,
            retries=False,
            preload_content=False,
        )


def data_lines(response: urllib3.BaseHTTPResponse) -> Iterator[str]:
    """The payloads of the stream's ``data:`` lines, each as soon as its line is complete. A stream cut
    short (by :func:`stop`, or an engine that died) raises urllib3's ``ProtocolError``."""
    pending = b""
    while data := response.read1(READ_SIZE):
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip().decode()
    if pending.startswith(b"data:"):
        yield pending[5:].strip().decode()


def stop(response: urllib3.BaseHTTPResponse) -> None:
    """End a stream another thread is reading (its read returns at once); the reader then closes it,
    which closes the connection: how an OpenAI-compatible engine learns to stop generating."""
    connection = response.connection  # None once closed or released: nothing is being read then
    sock = getattr(connection, "sock", None)
    if sock is not None:
        # both ways: the reader's recv returns at once, and the engine sees the connection end now, even
        # when nobody reads the stream any more (urllib3's own shutdown() is the read side only)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class Stopper:
    """Ends the streams whose stop flag is set, for every stream of the process from one thread.

    A blocked reader only learns of a cancel (client gone, timeout) when its socket is shut, so someone must
    look at the flag while it waits. One watcher thread per stream woke 20 times a second each (1,280 wake-ups
    a second at 64 streams, each taking the GIL from the relay); this one wakes 20 times a second in all, and
    only while a stream is open. Flags are plain ``threading.Event``-likes (set from anywhere, no callback).
    """

    POLL_S = 0.05

    def __init__(self) -> None:
        self._next = 0
        self._reset()

    def _reset(self) -> None:
        """A fresh state: at start, and in a forked child (the parent's thread is not there, and its lock
        may have been held at the fork)."""
        self._streams: dict[int, tuple[Any, urllib3.BaseHTTPResponse]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, flag: Any, response: urllib3.BaseHTTPResponse) -> Callable[[], None]:
        """Shut ``response`` (:func:`stop`) once ``flag.is_set()``; returns the call that stops watching."""
        with self._lock:
            key, self._next = self._next, self._next + 1
            self._streams[key] = (flag, response)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="medvlab-stream-stopper", daemon=True)
                self._thread.start()

        def forget() -> None:
            with self._lock:
                self._streams.pop(key, None)

        return forget

    def _run(self) -> None:
        while True:
            time.sleep(self.POLL_S)
            with self._lock:
                if not self._streams:
                    self._thread = None  # a later watch() starts another
                    return
                # stopped under the lock: once forget() has returned, this response is not being shut, so
                # its reader may hand the connection back to the pool for another answer
                for key in [k for k, (flag, _) in self._streams.items() if flag.is_set()]:
                    stop(self._streams.pop(key)[1])


STOPPER = Stopper()
os.register_at_fork(after_in_child=STOPPER._reset)
