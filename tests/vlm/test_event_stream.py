"""Reading an engine's server-sent events over urllib3, against raw HTTP servers on loopback that split the
stream where a real network may (mid-line, mid-character), never answer, or stand in as a proxy."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import urllib3

from medvlab.vlm.event_stream import EventStreams, Stopper, data_lines, stop


class RawServer:
    """One connection at a time on loopback; ``pieces`` are sent as HTTP/1.1 chunks with a pause between."""

    def __init__(self, pieces: list[bytes], pause_s: float = 0.02, end: str = "done") -> None:
        """``end``: ``done`` (the last chunk), ``hold`` (keep the connection until the client hangs up) or
        ``die`` (close it mid-stream, as an engine that crashed)."""
        self.pieces, self.pause_s, self.end = pieces, pause_s, end
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.client_closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            if self.end == "drop-first":  # a kept-alive connection that closes as the request comes
                self.end = "done"
                self.requests.append(request)
                conn.close()
                self._serve()
                return
            head, _, body = request.partition(b"\r\n\r\n")
            sizes = [h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")]
            length = int(sizes[0]) if sizes else 0
            while len(body) < length:
                body += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + body)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            for piece in self.pieces:
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                time.sleep(self.pause_s)
            if self.end == "die":
                return
            if self.end == "hold":  # an engine still generating: wait until the client hangs up
                conn.settimeout(10)
                try:
                    while conn.recv(65536):
                        pass
                except OSError:
                    return
                self.client_closed.set()
                return
            conn.sendall(b"0\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def streams() -> Iterator[list[RawServer]]:
    servers: list[RawServer] = []
    yield servers
    for s in servers:
        s.close()


def test_lines_split_anywhere_come_out_whole(streams: list[RawServer]) -> None:
    whole = 'data: {"a": "胸腔积液"}\n\ndata: {"b": 2}\r\n\r\n: a comment\n\ndata: [DONE]\n\n'.encode()
    cut = [whole[:3], whole[3:17], whole[17:18], whole[18:40], whole[40:]]  # mid "data:", mid 胸 (3 bytes)
    server = RawServer(cut)
    streams.append(server)
    events = EventStreams(f"http://127.0.0.1:{server.port}/v1", {"Authorization": "Bearer k"}, 2, 5)
    response = events.post("/chat/completions", {"q": 1})
    assert list(data_lines(response)) == ['{"a": "胸腔积液"}', '{"b": 2}', "[DONE]"]
    sent = server.requests[0]
    assert sent.startswith(b"POST /v1/chat/completions HTTP/1.1") and b'{"q": 1}' in sent
    assert b"Authorization: Bearer k" in sent and b"Accept: text/event-stream" in sent


def test_stop_ends_a_blocked_reader_and_hangs_up(streams: list[RawServer]) -> None:
    server = RawServer([b"data: 1\n\n"], end="hold")
    streams.append(server)
    response = EventStreams(f"http://127.0.0.1:{server.port}", {}, 2, 30).post("/x", {})
    got: list[object] = []

    def read() -> None:
        try:
            got.extend(data_lines(response))
        except urllib3.exceptions.ProtocolError as exc:  # cut mid-stream: the caller who stopped knows why
            got.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.3)
    assert reader.is_alive()  # blocked on the next event, which never comes
    stop(response)
    reader.join(5)
    assert not reader.is_alive() and got[0] == "1" and isinstance(got[1], urllib3.exceptions.ProtocolError)
    assert server.client_closed.wait(5)  # the engine sees the connection end: it stops generating
    stop(response)  # twice, or after the end: harmless
    response.close()
    stop(response)


def test_the_environment_proxy_is_used_unless_bypassed(
    streams: list[RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = RawServer([b"data: via proxy\n\n"])
    streams.append(proxy)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    response = EventStreams("http://engine.example:8000/v1", {}, 2, 5).post("/chat/completions", {})
    assert list(data_lines(response)) == ["via proxy"]
    assert proxy.requests[0].startswith(b"POST http://engine.example:8000/v1/chat/completions HTTP/1.1")
    monkeypatch.setenv("NO_PROXY", "engine.example")
    assert type(EventStreams("http://engine.example:8000/v1", {}, 2, 5).pool).__name__ == "PoolManager"


def test_an_engine_that_dies_mid_answer_is_the_labs_error(streams: list[RawServer]) -> None:
    from medvlab.config import GenerationOptions
    from medvlab.errors import GenerationError
    from medvlab.vlm.remote import OpenAIBackend

    first = b'data: {"choices": [{"index": 0, "delta": {"content": "Hello"}}]}\n\n'
    server = RawServer([first], end="die")
    streams.append(server)
    backend = OpenAIBackend(f"http://127.0.0.1:{server.port}/v1", "m")
    pieces = backend.stream([{"role": "user", "content": "Hi"}], GenerationOptions(max_new_tokens=8))
    assert next(pieces) == "Hello"
    with pytest.raises(GenerationError, match="stream from the engine .* broke"):
        next(pieces)
    assert backend.load_stats()["generating"] == 0


def test_a_connection_that_drops_before_answering_is_tried_once_more(streams: list[RawServer]) -> None:
    server = RawServer([b"data: 1\n\n"], end="drop-first")
    streams.append(server)
    response = EventStreams(f"http://127.0.0.1:{server.port}", {}, 2, 5).post("/x", {"n": 1})
    assert list(data_lines(response)) == ["1"] and len(server.requests) == 2


def test_a_refused_connection_is_not_repeated() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(urllib3.exceptions.NewConnectionError):
        EventStreams(f"http://127.0.0.1:{port}", {}, 2, 5).post("/x", {})


def test_one_stopper_thread_ends_each_stream_whose_flag_is_set(streams: list[RawServer]) -> None:
    """Three engines still generating; cancelling one hangs up on that one only, from a single thread
    that is gone once nothing is watched."""
    servers = [RawServer([b"data: 1\n\n"], end="hold") for _ in range(3)]
    streams.extend(servers)
    responses = [EventStreams(f"http://127.0.0.1:{s.port}", {}, 2, 30).post("/x", {}) for s in servers]
    flags = [threading.Event() for _ in servers]
    stopper = Stopper()
    before = {t.name for t in threading.enumerate()}
    forgets = [stopper.watch(f, r) for f, r in zip(flags, responses, strict=True)]
    watchers = [t for t in threading.enumerate() if t.name == "medvlab-stream-stopper"]
    assert len(watchers) == 1 and "medvlab-stream-stopper" not in before
    flags[1].set()
    assert servers[1].client_closed.wait(5)  # the cancelled stream's engine sees the hang-up
    time.sleep(3 * Stopper.POLL_S)
    assert not servers[0].client_closed.is_set() and not servers[2].client_closed.is_set()
    forgets[0]()  # a stream that ended is forgotten: its flag, set afterwards, no longer matters
    flags[0].set()
    time.sleep(3 * Stopper.POLL_S)
    assert not servers[0].client_closed.is_set()
    forgets[2]()
    watchers[0].join(5)
    assert not watchers[0].is_alive()  # nothing left to watch
    forgets.append(stopper.watch(flags[2], responses[2]))  # a new stream starts it again
    flags[2].set()
    assert servers[2].client_closed.wait(5)
    for r in responses:
        r.close()


def test_a_forked_child_watches_its_own_streams(streams: list[RawServer]) -> None:
    """A child forked while the parent's stopper runs starts its own (the parent's thread is not copied)."""
    import os

    from medvlab.vlm.event_stream import STOPPER

    parent_server, child_server = (
        RawServer([b"data: 1\n\n"], end="hold"),
        RawServer([b"data: 1\n\n"], end="hold"),
    )
    streams.extend([parent_server, child_server])
    parent_response = EventStreams(f"http://127.0.0.1:{parent_server.port}", {}, 2, 30).post("/x", {})
    forget = STOPPER.watch(threading.Event(), parent_response)  # the parent's stopper thread is running
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if its cancelled stream was cut within 5 s (not 30)
        ok = False
        try:
            response = EventStreams(f"http://127.0.0.1:{child_server.port}", {}, 2, 30).post("/x", {})
            flag = threading.Event()
            STOPPER.watch(flag, response)
            flag.set()
            started = time.monotonic()
            with contextlib.suppress(urllib3.exceptions.HTTPError):
                list(data_lines(response))
            ok = time.monotonic() - started < 5
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    forget()
    parent_response.close()
    assert child_server.client_closed.wait(5)  # the engine saw the child hang up
    assert os.waitstatus_to_exitcode(status) == 0
