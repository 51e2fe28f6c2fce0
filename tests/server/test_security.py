"""API keys, request-size limits, bounded concurrency, timeouts and remote-URL policy."""

from __future__ import annotations

import asyncio
import base64
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from medvlab.config import Settings
from medvlab.errors import GenerationError, InputRefusedError, OverloadedError
from medvlab.server.app import create_app
from medvlab.server.security import Admission, Guard, bind_host
from medvlab.services import Lab


def test_api_keys_guard_every_route_but_health(lab: Lab, cache_dir: Path) -> None:
    keyed = Lab(Settings(model="tiny", cache_dir=cache_dir, api_keys=["s3cret"]), backend=lab.backend)
    with TestClient(create_app(keyed, ui=True)) as tc:
        assert tc.get("/healthz").json()["auth"] is True
        r = tc.get("/v1/models")
        assert r.status_code == 401 and "MEDVLAB_API_KEYS" in r.json()["error"]["message"]
        assert r.headers["www-authenticate"] == "Bearer"
        assert tc.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert tc.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert tc.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert tc.get("/openapi.json").status_code == 401
        assert tc.post("/v1/chat/completions", json={}).status_code == 401  # auth before validation
        config = tc.get("/config")  # the web UI sits behind Gradio's login page
        assert config.status_code in (401, 403) or "auth_required" in config.text
        login = tc.post("/login", data={"username": "any", "password": "s3cret"})
        assert login.status_code == 200
        bad = tc.post("/login", data={"username": "any", "password": "nope"})
        assert bad.status_code in (400, 401)


def test_without_keys_only_loopback() -> None:
    assert bind_host("127.0.0.1", []) == ("127.0.0.1", None)
    host, why = bind_host("0.0.0.0", [])
    assert host == "127.0.0.1" and why and "MEDVLAB_API_KEYS" in why
    assert bind_host("0.0.0.0", ["k"]) == ("0.0.0.0", None)


def test_body_size_limit(lab: Lab, cache_dir: Path, dicom_files: dict[str, Path]) -> None:
    small = Lab(Settings(model="tiny", cache_dir=cache_dir, max_upload_mb=0.05), backend=lab.backend)
    big = (
        "data:application/dicom;base64," + base64.b64encode(dicom_files["RG1_UNCI.dcm"].read_bytes()).decode()
    )
    body = {
        "model": "tiny",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": big}}, {"type": "text", "text": "q"}],
            }
        ],
    }
    with TestClient(create_app(small, ui=False)) as tc:
        r = tc.post("/v1/chat/completions", json=body)
        assert r.status_code == 413 and "MEDVLAB_MAX_UPLOAD_MB" in r.json()["error"]["message"]

        def chunks():  # no Content-Length: the limit is enforced while the body streams in
            for _ in range(400):  # 4 MiB, above the 1.07 MiB the limit allows
                yield b"x" * 10240

        r = tc.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert tc.get("/healthz").status_code == 200


def test_admission_queue_and_retry_after() -> None:
    adm = Admission(concurrency=1, queue=1, timeout=5, seconds_per_request=4)
    adm.acquire()
    waiter_done = threading.Event()

    def waiter() -> None:
        adm.acquire()  # queued until the first releases
        waiter_done.set()
        adm.release()

    t = threading.Thread(target=waiter)
    t.start()
    while adm.state()["queued"] == 0:
        pass
    with pytest.raises(OverloadedError) as info:
        adm.acquire()  # one running, one queued: the third is refused at once
    assert info.value.retry_after == 8
    adm.release()
    t.join(5)
    assert waiter_done.is_set() and adm.state() == {"active": 0, "queued": 0, "capacity": 1, "queue_limit": 1}


def test_a_free_slot_is_taken_at_once_but_never_ahead_of_the_queue() -> None:
    adm = Admission(concurrency=2, queue=4, timeout=5)
    assert adm.try_acquire() and adm.try_acquire()
    assert not adm.try_acquire()  # full: the caller waits in a worker thread (acquire)
    queued = threading.Thread(target=adm.acquire)
    queued.start()
    while adm.state()["queued"] == 0:
        pass
    with adm._cond:  # a slot frees while a request is queued, before that request has woken up
        adm.active -= 1
        assert not adm.try_acquire()  # the queued request is first
        adm._cond.notify()
    queued.join(5)
    assert adm.state()["active"] == 2 and adm.state()["queued"] == 0
    adm.release()
    assert adm.try_acquire()


def test_a_stream_relays_every_piece_in_order_then_the_error() -> None:
    """Pieces from the generating thread reach the loop whole and in order (those waiting at a wake-up go
    out as one write), an error comes after the pieces before it, and the slot is freed."""
    adm = Admission(concurrency=1, queue=0, timeout=5)
    closed = threading.Event()

    def pieces() -> Iterator[str]:
        try:
            yield from (f"{i}," for i in range(500))
            raise GenerationError("The engine broke.", "Retry.")
        finally:
            closed.set()

    async def relay(guard: Guard) -> tuple[list[str], Exception | None]:
        got: list[str] = []
        try:
            async for chunk in guard.stream(pieces()):
                got.append(chunk)
        except GenerationError as exc:
            return got, exc
        return got, None

    guard = Guard(adm, 30)
    got, error = asyncio.run(relay(guard))
    assert isinstance(error, GenerationError) and "engine broke" in str(error)
    assert "".join(got) == "".join(f"{i}," for i in range(500)) and len(got) < 500
    assert closed.is_set() and guard.cancel.is_set() and adm.state()["active"] == 0


def test_a_stream_the_client_leaves_stops_its_generation() -> None:
    adm = Admission(concurrency=1, queue=0, timeout=5)
    closed = threading.Event()

    def endless() -> Iterator[str]:
        try:
            while True:
                yield "x"
                time.sleep(0.001)
        finally:
            closed.set()

    async def first_then_leave(guard: Guard) -> str:
        relay = guard.stream(endless())
        chunk: str = await relay.__anext__()
        await relay.aclose()  # what the response does when its client disconnects
        return chunk

    guard = Guard(adm, 30)
    assert asyncio.run(first_then_leave(guard)).startswith("x")
    assert closed.is_set() and guard.cancel.is_set() and adm.state()["active"] == 0


def test_generation_timeout_stops_long_answers(lab: Lab, cache_dir: Path) -> None:
    quick = Lab(Settings(model="tiny", cache_dir=cache_dir, request_timeout_s=0.3), backend=lab.backend)
    with TestClient(create_app(quick, ui=False)) as tc:
        r = tc.post(
            "/v1/chat/completions",
            json={
                "model": "tiny",
                "max_tokens": 20000,
                "min_tokens": 20000,
                "messages": [{"role": "user", "content": "Describe."}],
            },
        )
        assert r.status_code == 200
        assert r.json()["usage"]["completion_tokens"] < 20000
        assert tc.get("/healthz").json()["load"]["active"] == 0


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_remote_urls_only_when_enabled(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "ct.dcm").write_bytes(dicom_files["CT_small.dcm"].read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/ct.dcm"
    try:
        with pytest.raises(InputRefusedError):
            Lab(Settings(model="tiny")).load_image_reference(url)
        allowed = Lab(Settings(model="tiny", allow_remote_urls=True))
        assert allowed.load_image_reference(url).modality == "CT"
        with pytest.raises(Exception, match="HTTP 404"):
            allowed.load_image_reference(url.replace("ct.dcm", "missing.dcm"))
    finally:
        server.shutdown()
    assert httpx.__version__  # the client used for fetching is the one the project depends on
