"""Load on loopback: many concurrent streaming clients against a small server. Bounded in count and time."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from medvlab.config import Settings
from medvlab.server.app import create_app
from medvlab.services import Lab
from medvlab.vlm.prompting import DISCLAIMERS
from tests.helpers import serve_in_thread


@pytest.fixture(scope="module")
def small_server(lab: Lab, cache_dir: Path) -> Iterator[str]:
    limited = Lab(
        Settings(model="tiny", cache_dir=cache_dir, max_concurrency=2, max_queue=2), backend=lab.backend
    )
    with serve_in_thread(create_app(limited, ui=False)) as url:
        yield url


def stream_once(url: str, max_tokens: int) -> tuple[int, str, str | None]:
    body = {
        "model": "tiny",
        "stream": True,
        "max_tokens": max_tokens,
        "min_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Describe a normal chest X-ray."}],
    }
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, r.text, r.headers.get("retry-after")
        text = ""
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choice = json.loads(line[6:])["choices"][0]
                text += choice["delta"].get("content") or ""
        return 200, text, None


def test_sixteen_clients_complete_or_get_429(small_server: str) -> None:
    proc = psutil.Process(os.getpid())
    rss_before = proc.memory_info().rss
    results: list[tuple[int, str, str | None]] = []
    lock = threading.Lock()

    def client() -> None:
        out = stream_once(small_server, 40)
        with lock:
            results.append(out)

    threads = [threading.Thread(target=client) for _ in range(16)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert time.monotonic() - started < 120
    assert len(results) == 16  # no request lost: each got an answer or a refusal
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 429]
    assert len(ok) + len(refused) == 16
    assert ok and all(text.endswith(DISCLAIMERS["en"]) for _, text, _ in ok)
    assert refused and all(int(retry) >= 1 and "busy" in body for _, body, retry in refused)  # type: ignore[arg-type]
    assert proc.memory_info().rss - rss_before < 400 * 2**20  # memory stays bounded
    load = httpx.get(f"{small_server}/healthz").json()["load"]
    assert load["active"] == 0 and load["queued"] == 0
    # and it keeps serving
    assert stream_once(small_server, 5)[0] == 200


def test_client_disconnect_cancels_generation(small_server: str) -> None:
    body = {
        "model": "tiny",
        "stream": True,
        "max_tokens": 20000,
        "min_tokens": 20000,
        "messages": [{"role": "user", "content": "Describe everything in detail."}],
    }
    with httpx.stream("POST", f"{small_server}/v1/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # got real text: now hang up
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        load = httpx.get(f"{small_server}/healthz").json()["load"]
        if load["generating"] == 0 and load["active"] == 0:
            break
        time.sleep(0.1)
    load = httpx.get(f"{small_server}/healthz").json()["load"]
    assert load["generating"] == 0 and load["active"] == 0  # stopped long before 20000 tokens


def test_non_streaming_clients_that_leave_free_the_server(small_server: str) -> None:
    """Abandoned non-streaming requests stop their generation, and queued ones leave the queue."""
    body = {
        "model": "tiny",
        "max_tokens": 4000,
        "min_tokens": 4000,
        "messages": [{"role": "user", "content": "Describe everything in detail."}],
    }

    outcomes: list[str] = []

    def give_up() -> None:
        try:
            httpx.post(f"{small_server}/v1/chat/completions", json=body, timeout=httpx.Timeout(5, read=1.5))
            outcomes.append("answered")
        except httpx.ReadTimeout:
            outcomes.append("gave up")

    clients = [threading.Thread(target=give_up) for _ in range(4)]  # 2 run, 2 wait in the queue
    for c in clients:
        c.start()
    for c in clients:
        c.join(30)
    assert outcomes == ["gave up"] * 4  # 4000 tokens take far longer than the clients wait
    deadline = time.monotonic() + 8
    load: dict[str, int] = {}
    while time.monotonic() < deadline:
        load = httpx.get(f"{small_server}/healthz").json()["load"]
        if load["generating"] == 0 and load["active"] == 0 and load["queued"] == 0:
            break
        time.sleep(0.1)
    assert load["generating"] == 0 and load["active"] == 0 and load["queued"] == 0, load
    # the server is free at once for the next client
    r = httpx.post(f"{small_server}/v1/chat/completions", json={**body, "max_tokens": 4, "min_tokens": 0})
    assert r.status_code == 200
