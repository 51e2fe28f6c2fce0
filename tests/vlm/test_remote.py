"""The remote engine against a real OpenAI-compatible server: a second ``medvlab serve --model tiny``."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from medvlab import errors as E
from medvlab.config import Settings
from medvlab.imaging import load
from medvlab.server.app import create_app
from medvlab.services import Lab
from medvlab.vlm.prompting import DISCLAIMERS, Turn, build_messages
from medvlab.vlm.remote import DisclaimerTail, ThinkingText
from medvlab.vlm.structured import FIELDS
from tests.helpers import free_port, start_server_process, wait_until_up

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tiny_dir: Path, cache_dir: Path, sft_adapter: Path) -> Iterator[str]:
    """The engine: another lab process serving the tiny model's OpenAI-compatible API on loopback (it may
    load adapters from the trained adapter's folder)."""
    port = free_port()
    env = {
        **os.environ,
        "MEDVLAB_CACHE_DIR": str(cache_dir),
        "HF_HUB_OFFLINE": "1",
        "MEDVLAB_ALLOWED_PATHS": json.dumps([str(sft_adapter.parent)]),
    }
    proc = start_server_process(port, env, "--no-ui")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, ready="model")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def front(engine_url: str, cache_dir: Path, **kw: object) -> Lab:
    s = Settings(model="tiny", cache_dir=cache_dir, engine="openai", engine_url=f"{engine_url}/v1", **kw)
    return Lab(s)


def ct_turns(dicom_files: dict[str, Path], question: str = "Any lesion?") -> list[Turn]:
    return [Turn("user", question, [load(dicom_files["CT_small.dcm"])])]


def test_answers_stream_through_the_remote(
    engine: str, cache_dir: Path, dicom_files: dict[str, Path]
) -> None:
    from medvlab.vlm.generation import StreamStats

    lab = front(engine, cache_dir)
    stats = StreamStats()
    pieces = list(
        lab.chat(ct_turns(dicom_files), generation=lab.generation_options(max_new_tokens=6), stats=stats)
    )
    text = "".join(pieces)
    assert len(pieces) >= 2 and text.count("For research and teaching only") == 1  # the engine's copy removed
    assert text.endswith(DISCLAIMERS["en"])
    assert stats.prompt_tokens > 0 and 0 < stats.completion_tokens <= 6
    zh = "".join(
        lab.chat(ct_turns(dicom_files, "有病灶吗？"), generation=lab.generation_options(max_new_tokens=4))
    )
    assert zh.endswith(DISCLAIMERS["zh"]) and "For research" not in zh
    data = lab.structured(ct_turns(dicom_files), generation=lab.generation_options(max_new_tokens=8))
    assert set(FIELDS) <= set(data) and data["confidence"] in ("low", "moderate", "high")


def test_the_lab_in_front_serves_its_api(engine: str, cache_dir: Path, dicom_files: dict[str, Path]) -> None:
    import base64

    lab = front(engine, cache_dir)
    uri = (
        "data:application/dicom;base64," + base64.b64encode(dicom_files["CT_small.dcm"].read_bytes()).decode()
    )
    content = [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": "Describe."}]
    body = {"model": "tiny", "max_tokens": 5, "messages": [{"role": "user", "content": content}]}
    with TestClient(create_app(lab, ui=False)) as tc:
        r = tc.post("/v1/chat/completions", json=body)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].endswith(
            DISCLAIMERS["en"]
        )
        lines = tc.post("/v1/chat/completions", json={**body, "stream": True}).text.splitlines()
        assert lines[-2] == "data: [DONE]" or lines[-1] == "data: [DONE]"
        r = tc.post("/v1/explain", json={"image": uri, "question": "q", "answer": "a"})
        assert r.status_code == 501 and "in-process" in r.json()["error"]["message"]
        r = tc.post("/v1/adapters", json={"path": "/x"})  # the lab in front checks folders first
        assert r.status_code == 403 and "MEDVLAB_ALLOWED_PATHS" in r.json()["error"]["message"]
        assert tc.get("/healthz").json()["status"] == "ok"


def test_only_rendered_pixels_and_text_are_sent(
    engine: str, cache_dir: Path, dicom_files: dict[str, Path]
) -> None:
    import pydicom

    lab = front(engine, cache_dir)
    ds = pydicom.dcmread(dicom_files["CT_small.dcm"])
    messages = build_messages(ct_turns(dicom_files), lab.prompt_options())
    body = json.dumps(lab.backend.body(messages, lab.generation_options()))  # type: ignore[attr-defined]
    assert str(ds.PatientName) not in body and str(ds.StudyInstanceUID) not in body
    assert body.count("data:image/png;base64,") == 1 and "application/dicom" not in body


def test_a_client_that_stops_reading_stops_the_remote(engine: str, cache_dir: Path) -> None:
    lab = front(engine, cache_dir)
    options = lab.generation_options(max_new_tokens=3000, min_new_tokens=3000)
    cancel = threading.Event()
    chunks = lab.chat([Turn("user", "Describe everything.")], generation=options, cancel=cancel)
    next(chunks)
    busy = httpx.get(f"{engine}/healthz").json()["load"]["generating"]
    cancel.set()  # the client went away
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and httpx.get(f"{engine}/healthz").json()["load"]["generating"]:
        time.sleep(0.1)
    assert busy == 1 and httpx.get(f"{engine}/healthz").json()["load"]["generating"] == 0
    chunks.close()


def test_cancel_while_another_thread_reads_ends_the_answer_quietly(engine: str, cache_dir: Path) -> None:
    """A non-streaming route joins the answer in a worker thread; the client leaving sets cancel."""
    lab = front(engine, cache_dir)
    options = lab.generation_options(max_new_tokens=3000, min_new_tokens=3000)
    cancel = threading.Event()
    outcome: list[object] = []

    def join() -> None:
        try:
            outcome.append(
                "".join(lab.chat([Turn("user", "Describe everything.")], generation=options, cancel=cancel))
            )
        except Exception as exc:
            outcome.append(exc)

    reader = threading.Thread(target=join)
    reader.start()
    time.sleep(1.0)
    cancel.set()
    reader.join(15)
    assert not reader.is_alive() and isinstance(outcome[0], str) and outcome[0].endswith(DISCLAIMERS["en"])


def test_engine_down_slow_or_wrong(engine: str, cache_dir: Path) -> None:
    turns = [Turn("user", "Hi")]
    down = Lab(
        Settings(
            model="tiny",
            cache_dir=cache_dir,
            engine="openai",
            engine_url=f"http://127.0.0.1:{free_port()}/v1",
        )
    )
    with pytest.raises(E.EngineUnavailableError, match="Start the engine"):
        "".join(down.chat(turns))
    with TestClient(create_app(down, ui=False)) as tc:
        r = tc.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}
        )
        assert r.status_code == 503 and r.json()["error"]["code"] == "EngineUnavailableError"
    # an engine that accepts the connection and never answers
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    slow = Lab(
        Settings(
            model="tiny",
            cache_dir=cache_dir,
            engine="openai",
            engine_url=f"http://127.0.0.1:{server.getsockname()[1]}/v1",
            engine_timeout_s=1,
        )
    )
    with pytest.raises(E.EngineTimeoutError, match="did not answer within 1 s"):
        "".join(slow.chat(turns))
    assert E.http_status(E.EngineTimeoutError("x")) == 504
    server.close()
    wrong = front(engine, cache_dir, engine_model="nope")
    with pytest.raises(E.RequestError, match="'nope' is not served"):
        "".join(wrong.chat(turns))
    with pytest.raises(ValueError, match="--engine-url"):
        Settings(engine="openai")


def test_thinking_and_disclaimer_filters_work_across_chunks() -> None:
    thinking = ThinkingText()
    chunks = ["Hello <unu", "sed94>secret", " plan<unused9", "5> world<", "x"]
    assert "".join(thinking.feed(c) for c in chunks) + thinking.flush() == "Hello  world<x"
    tail = DisclaimerTail()
    text = "An answer." + "\n\n" + DISCLAIMERS["zh"]
    out = "".join(tail.feed(text[i : i + 7]) for i in range(0, len(text), 7)) + tail.flush()
    assert out == "An answer."


def test_the_disclaimer_filter_does_not_hold_back_the_answer() -> None:
    tail = DisclaimerTail()
    assert tail.feed("The lungs are clear.") == "The lungs are clear."
    assert tail.feed("\n\nNo effusion.") == "\n\nNo effusion."  # a paragraph, not a disclaimer
    assert tail.feed("\n\n⚠️ For research") == ""  # could be one: held
    assert tail.feed(" and teaching only") == ""
    assert tail.flush() == "\n\n⚠️ For research and teaching only"  # was not the whole disclaimer


def test_adapters_on_the_engine_chosen_by_model(
    engine: str, cache_dir: Path, dicom_files: dict[str, Path], sft_adapter: Path
) -> None:
    """Adapters loaded through the lab in front land on the engine (its run-time API) and a request's
    ``model`` picks one there; the answer is the engine's own answer with that adapter."""
    import base64

    lab = front(engine, cache_dir, allowed_paths=[sft_adapter.parent])
    uri = (
        "data:application/dicom;base64," + base64.b64encode(dicom_files["RG1_UNCI.dcm"].read_bytes()).decode()
    )
    content = [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": "Effusion?"}]

    def body(model: str) -> dict[str, object]:
        return {"model": model, "max_tokens": 6, "messages": [{"role": "user", "content": content}]}

    with TestClient(create_app(lab, ui=False)) as tc:
        r = tc.post("/v1/adapters", json={"name": "cxr", "path": str(sft_adapter)})
        assert r.status_code == 200 and r.json()["adapters"][0]["name"] == "cxr"
        on_engine = httpx.get(f"{engine}/v1/adapters").json()["adapters"]
        assert on_engine == [{"name": "cxr", "path": str(sft_adapter.resolve())}]
        via_lab = tc.post("/v1/chat/completions", json=body("cxr")).json()
        direct = httpx.post(f"{engine}/v1/chat/completions", json=body("cxr"), timeout=120).json()
        base = httpx.post(f"{engine}/v1/chat/completions", json=body("tiny"), timeout=120).json()
        answer = via_lab["choices"][0]["message"]["content"]
        assert via_lab["model"] == "cxr" and answer == direct["choices"][0]["message"]["content"]
        assert answer != base["choices"][0]["message"]["content"]
        assert tc.delete("/v1/adapters", params={"name": "cxr"}).json()["adapters"] == []
        assert httpx.get(f"{engine}/v1/adapters").json()["adapters"] == []
        assert tc.post("/v1/chat/completions", json=body("cxr")).status_code == 404
