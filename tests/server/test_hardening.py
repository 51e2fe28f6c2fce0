"""What a probe of the running lab found (issue: security and privacy holes), each kept fixed by a test."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from medvlab import errors as E
from medvlab import scratch
from medvlab.config import Settings
from medvlab.server.app import create_app
from medvlab.server.security import Admission
from medvlab.services import Lab
from tests.helpers import free_port, serve_in_thread, start_server_process

KEY = "k" * 24


def b64(data: bytes, mime: str = "application/dicom") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def ask(image_uri: str, question: str = "Describe.", **extra: Any) -> dict[str, Any]:
    content = [{"type": "image_url", "image_url": {"url": image_uri}}, {"type": "text", "text": question}]
    return {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture(scope="module")
def keyed_server(lab: Lab, cache_dir: Path) -> Iterator[str]:
    """A server with API keys (so the UI has a login page), sharing the session's tiny model."""
    keyed = Lab(Settings(model="tiny", cache_dir=cache_dir, api_keys=[KEY]), backend=lab.backend)
    with serve_in_thread(create_app(keyed)) as url:
        yield url


def gradio_call(client: httpx.Client, api: str, data: list[Any]) -> tuple[str, str]:
    """(event, data) of one call through Gradio's HTTP API, as any client could make it."""
    r = client.post(f"/gradio_api/call/{api}", json={"data": data})
    assert r.status_code == 200, r.text
    r = client.get(f"/gradio_api/call/{api}/{r.json()['event_id']}")
    event = next(line[7:] for line in r.text.splitlines() if line.startswith("event: "))
    payload = next(line[6:] for line in r.text.splitlines() if line.startswith("data: "))
    return event, payload


def file_data(path: str) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.dcm"}


@pytest.mark.slow
@pytest.mark.parametrize("keyed", [False, True], ids=["no-keys", "api-keys"])
def test_ui_functions_read_only_uploads(
    keyed: bool, live_server: str, request: pytest.FixtureRequest, dicom_files: dict[str, Path]
) -> None:
    url = request.getfixturevalue("keyed_server") if keyed else live_server
    client = httpx.Client(base_url=url, timeout=60)
    if keyed:
        assert client.post("/login", data={"username": "x", "password": KEY}).status_code == 200
    outside = str(dicom_files["CT_small.dcm"])  # exists on the server, outside MEDVLAB_ALLOWED_PATHS
    answers = {}
    for path in ("/etc/passwd", outside, "/no/such/file.dcm"):
        calls: list[tuple[str, list[Any]]] = [
            ("load", [[file_data(path)], "auto", "English"]),
            ("ask", [[file_data(path)], "q", "auto", 4, 8]),
            ("ask", [[{"path": path}], "q", "auto", 4, 8]),  # gr.api takes raw dicts
            ("ask", [path, "q", "auto", 4, 8]),
        ]
        for variant, (api, data) in enumerate(calls):
            event, payload = gradio_call(client, api, data)
            assert event == "error", (api, path, payload)
            answers.setdefault(variant, set()).add(payload.replace(path, "<path>"))
    # the same words whether the file exists or not: no oracle for the server's files
    assert all(len(texts) == 1 for texts in answers.values()), answers
    ui_folder = Path(os.environ["GRADIO_TEMP_DIR"])
    copied = [p for p in ui_folder.rglob("*") if p.is_file() and p.stat().st_size < 10**6]
    assert not any(b"root:" in p.read_bytes() for p in copied)  # /etc/passwd was not copied in
    assert not any(p.read_bytes() == Path(outside).read_bytes() for p in copied)


@pytest.mark.slow
def test_ui_uploads_are_deleted_once_read(live_server: str, dicom_files: dict[str, Path]) -> None:
    client = httpx.Client(base_url=live_server, timeout=60)
    ct = dicom_files["CT_small.dcm"].read_bytes()
    r = client.post("/gradio_api/upload", files=[("files", ("PLANTEDNAME^ZED.dcm", ct, "application/dicom"))])
    uploaded = r.json()[0]
    assert Path(uploaded).exists() and Path(uploaded).is_relative_to(scratch.root())
    event, payload = gradio_call(client, "load", [[file_data(uploaded)], "auto", "English"])
    assert event == "complete" and "CT" in payload
    assert not Path(uploaded).exists()
    assert not any("PLANTED" in p.name for p in scratch.root().rglob("*"))


def test_empty_api_key_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty key"):
        Settings(api_keys=[""])
    with pytest.raises(ValueError, match="spaces"):
        Settings(api_keys=[" key "])
    env = {**os.environ, "MEDVLAB_API_KEYS": '[""]', "MEDVLAB_CACHE_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "medvlab.cli.main", "serve", "--model", "tiny", "--host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "empty key" in run.stderr  # one line, no traceback


def test_over_long_prompts_get_400_naming_the_limit(lab: Lab) -> None:
    with TestClient(create_app(lab, ui=False, preload=False)) as tc:
        for size in (100_000, 1_000_000):
            r = tc.post(
                "/v1/chat/completions",
                json={"model": "tiny", "messages": [{"role": "user", "content": "x " * (size // 2)}]},
            )
            assert r.status_code == 400, r.text
            err = r.json()["error"]
            assert err["code"] == "PromptTooLongError" and "4096 tokens" in err["message"]
        assert tc.get("/healthz").json()["load"]["active"] == 0
    with pytest.raises(E.PromptTooLongError):  # the engine refuses before the first token is asked for
        lab.backend.stream(
            [{"role": "user", "content": [{"type": "text", "text": "y " * 50_000}]}], lab.generation_options()
        )


def test_answers_stay_inside_the_context_window(lab: Lab) -> None:
    from medvlab.vlm.generation import StreamStats

    stats = StreamStats()
    messages = [{"role": "user", "content": [{"type": "text", "text": "Describe. " * 500}]}]
    text = "".join(
        lab.backend.stream(messages, lab.generation_options(max_new_tokens=8000, min_new_tokens=8000), stats)
    )
    assert text and stats.prompt_tokens + stats.completion_tokens <= 4096


def test_client_errors_are_4xx_json_not_500_or_503(lab: Lab, tmp_path: Path) -> None:
    with TestClient(create_app(lab, ui=False, preload=False), raise_server_exceptions=False) as tc:
        chat = {"model": "tiny", "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]}
        bad_schema = {
            **chat,
            "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 12}}},
        }
        r = tc.post("/v1/chat/completions", json=bad_schema)
        assert r.status_code == 400 and r.json()["error"]["code"] == "RequestError", r.text
        assert "json_schema" in r.json()["error"]["message"]
        r = tc.post("/v1/chat/completions", json={**chat, "temperature": 1e-300})
        assert r.status_code == 200  # below 1e-5: greedy, as vLLM does
        r = tc.post("/v1/chat/completions", json={**chat, "seed": 2**80})
        assert r.status_code == 400 and r.json()["error"]["code"] == "RequestValidationError"
        r = tc.post(
            "/v1/chat/completions", content=b"[" * 100_000, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400 and set(r.json()) == {"error"}, r.text
        r = tc.post(
            "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400 and set(r.json()) == {"error"}
        r = tc.get("/v1/no-such-route")
        assert r.status_code == 404 and set(r.json()) == {"error"}
        # a NIfTI whose intercept overflows float32 windowing: a picture or a 4xx, never a 500
        import nibabel as nib

        img = nib.Nifti1Image(np.arange(1000, dtype=np.int16).reshape(10, 10, 10), np.eye(4))
        for inter in (1e38, -1e38):
            img.header.set_slope_inter(1.0, inter)
            path = tmp_path / "scl.nii"
            nib.save(img, path)
            r = tc.post("/v1/chat/completions", json=ask(b64(path.read_bytes(), "application/x-nifti")))
            assert r.status_code < 500, r.text


def test_a_failed_generation_is_500_not_model_load(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = lab.backend

    def out_of_memory(**kwargs: Any) -> None:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(backend, "run_generate", out_of_memory)
    with TestClient(create_app(lab, ui=False, preload=False)) as tc:
        body = {
            "model": "tiny",
            "max_tokens": 3,
            "temperature": 0.5,
            "messages": [{"role": "user", "content": "Hi"}],
        }
        r = tc.post("/v1/chat/completions", json=body)
        assert r.status_code == 500 and r.json()["error"]["code"] == "GenerationError", r.text
        assert "load" not in r.json()["error"]["message"].lower().split("fix")[0]
        assert tc.get("/healthz").json()["status"] == "ok"  # the model is still loaded


def test_every_error_class_has_its_http_status() -> None:
    def subclasses(cls: type) -> set[type]:
        return {cls} | {s for c in cls.__subclasses__() for s in subclasses(c)}

    classes = {c for c in subclasses(E.MedvlabError) if c.__module__ == "medvlab.errors"} - {E.MedvlabError}
    mapped = {cls for cls, _ in E.HTTP_STATUS}
    assert classes <= mapped, classes - mapped
    # subclasses come before their bases, so each class gets its own row
    for i, (cls, _) in enumerate(E.HTTP_STATUS):
        assert not any(issubclass(later, cls) and later is not cls for later, _ in E.HTTP_STATUS[i + 1 :])
    assert E.http_status(E.GenerationError("x")) == 500 and E.http_status(E.ModelLoadError("x")) == 503
    assert (
        E.http_status(E.PromptTooLongError("x")) == 400
        and E.http_status(E.OverloadedError("x", "y", 1)) == 429
    )


def test_retry_after_follows_measured_generation_time() -> None:
    adm = Admission(concurrency=2, queue=8, timeout=5)  # first guess: 10 s a request
    for _ in range(3):
        adm.observe(1.5)
    assert adm.retry_after() == 1  # 1.5 s x 1 ahead / 2 slots, not a fixed 45 s guess
    adm.waiting = 8
    assert adm.retry_after() == 7  # 1.5 s x 9 / 2


def test_size_messages_are_precise(lab: Lab, cache_dir: Path) -> None:
    small = Lab(Settings(model="tiny", cache_dir=cache_dir, max_upload_mb=1), backend=lab.backend)
    with TestClient(create_app(small, ui=False, preload=False)) as tc:
        data = b"\0" * int(1.2 * 2**20)
        r = tc.post("/v1/chat/completions", json=ask(b64(data)))
        assert (
            r.status_code == 413 and "1.20 MiB, above the limit of 1.00 MiB" in r.json()["error"]["message"]
        )
        r = tc.post(
            "/v1/chat/completions",
            content=b"x" * int(2.5 * 2**20),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413 and "2.50 MiB" in r.json()["error"]["message"]


def test_pixel_budget_and_decode_gate(lab: Lab, cache_dir: Path) -> None:
    import psutil

    limited = Lab(Settings(model="tiny", cache_dir=cache_dir, max_concurrency=2), backend=lab.backend)
    buf = io.BytesIO()
    Image.new("1", (13000, 13000)).save(buf, format="PNG")  # ~30 KB on the wire, 169 Mpx decoded
    assert len(buf.getvalue()) < 100_000
    rss = psutil.Process().memory_info().rss
    with TestClient(create_app(limited, ui=False, preload=False)) as tc:
        r = tc.post("/v1/chat/completions", json=ask(b64(buf.getvalue(), "image/png")))
    assert r.status_code == 413 and "pixels" in r.json()["error"]["message"], r.text
    assert psutil.Process().memory_info().rss - rss < 150 * 2**20  # refused before decoding
    # at most max_concurrency images decode at once, whatever the number of requests
    inside, most = 0, 0
    lock = threading.Lock()
    release = threading.Event()

    def decode() -> None:
        nonlocal inside, most
        with limited.inputs.decoding():
            with lock:
                inside += 1
                most = max(most, inside)
            release.wait(0.3)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=decode) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most == 2


def test_feedback_does_not_follow_links_out_of_allowed_folders(
    lab: Lab, cache_dir: Path, tmp_path: Path, dicom_files: dict[str, Path]
) -> None:
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (outside / "secret.dcm").write_bytes(dicom_files["CT_small.dcm"].read_bytes())
    (allowed / "ok.dcm").write_bytes(dicom_files["MR_small.dcm"].read_bytes())
    (allowed / "link.dcm").symlink_to(outside / "secret.dcm")
    data = tmp_path / "data"
    s = Settings(model="tiny", cache_dir=cache_dir, allowed_paths=[allowed], data_dir=data)
    fenced = Lab(s, backend=lab.backend)
    with TestClient(create_app(fenced, ui=False, preload=False)) as tc:
        fb = {"question": "q", "answer": "a", "rating": 1}
        for ref in (str(allowed), str(allowed / "link.dcm")):
            r = tc.post("/v1/feedback", json={**fb, "image": ref})
            assert r.status_code == 403, (ref, r.text)
        assert fenced.feedback.count() == 0
        r = tc.post("/v1/feedback", json={**fb, "image": str(allowed / "ok.dcm")})
        assert r.status_code == 200 and fenced.feedback.count() == 1


def test_no_identified_copy_left_on_disk(
    lab: Lab, cache_dir: Path, tmp_path: Path, dicom_files: dict[str, Path]
) -> None:
    """Planted PHI goes through every API route that takes an image; then no file the lab wrote holds it."""
    import pydicom

    ds = pydicom.dcmread(dicom_files["CT_small.dcm"])
    ds.PatientName = "PLANTEDNAME^ZED"
    ds.PatientID = "PLANTEDID42"
    ds.StudyDescription = "CT of PLANTEDNAME"
    ds.SeriesDescription = "ZED PLANTEDNAME series"
    ds.ImageComments = "seen by PLANTEDDOC"
    block = ds.private_block(0x0011, "ACME", create=True)
    block.add_new(0x01, "LO", "PLANTEDPRIVATE")
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    uri = b64(out.getvalue())
    data = tmp_path / "data"
    s = Settings(
        model="tiny", cache_dir=cache_dir, data_dir=data, kb_url=f"sqlite:///{tmp_path / 'kb.sqlite'}"
    )
    private = Lab(s, backend=lab.backend)
    before = {p for p in Path(tempfile.gettempdir()).iterdir()}
    with TestClient(create_app(private, ui=False, preload=False)) as tc:
        assert tc.post("/v1/chat/completions", json=ask(uri)).status_code == 200
        assert (
            tc.post(
                "/v1/analyze",
                files={"file": ("PLANTEDNAME.dcm", out.getvalue())},
                data={"question": "q", "max_new_tokens": "3"},
            ).status_code
            == 200
        )
        r = tc.post(
            "/v1/feedback",
            json={"image": uri, "question": "q", "answer": "a", "rating": -1, "better_answer": "b"},
        )
        assert r.status_code == 200
        assert (
            tc.post("/v1/reports", json={"image": uri, "question": "q", "max_new_tokens": 3}).status_code
            == 200
        )
        assert tc.get("/v1/feedback/export").status_code == 200
    roots = [data, scratch.root(), *(p for p in Path(tempfile.gettempdir()).iterdir() if p not in before)]
    hits = []
    for root in roots:
        for p in [root, *root.rglob("*")] if root.is_dir() else [root]:
            if "PLANTED" in p.name.upper() or (p.is_file() and b"PLANTED" in p.read_bytes().upper()):
                hits.append(p)
    assert hits == []
    assert private.feedback.count() == 1


def test_scratch_sweeps_dead_runs_and_reaps_old_files(tmp_path: Path) -> None:
    dead = tmp_path / f"{scratch.PREFIX}999999999-abc"
    alive = tmp_path / f"{scratch.PREFIX}{os.getpid()}-abc"
    legacy = tmp_path / "medvlab-seg-ab12cd34"
    other = tmp_path / "medvlab-cache"
    for d in (dead, alive, legacy, other):
        d.mkdir()
        (d / "upload.dcm").write_bytes(b"PHI")
    removed = scratch.sweep_stale(tmp_path)
    assert set(removed) == {dead, legacy} and alive.exists() and other.exists()
    old = alive / "old.pdf"
    old.write_bytes(b"x")
    os.utime(old, (1, 1))
    assert scratch.reap(60, alive) == 1 and not old.exists() and (alive / "upload.dcm").exists()


def test_json_schema_check_names_the_problem() -> None:
    from medvlab.vlm.structured import check_schema

    for bad, words in (
        ({"type": 12}, "object"),
        ({"type": "object", "properties": {"a": {"type": "nope"}}}, "nope"),
    ):
        with pytest.raises(E.RequestError, match=words):
            check_schema(bad)
    assert json.dumps(check_schema({"type": "object", "properties": {"a": {"type": "string"}}}))


@pytest.mark.slow
def test_server_scratch_is_removed_at_shutdown_and_swept_after_a_crash(
    tiny_dir: Path, cache_dir: Path, tmp_path: Path, dicom_files: dict[str, Path]
) -> None:
    """``medvlab serve`` keeps uploads in TMPDIR/medvlab-run-<pid>-*: gone after SIGTERM; after SIGKILL the
    next start-up removes it."""
    import signal

    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "MEDVLAB_CACHE_DIR": str(cache_dir), "HF_HUB_OFFLINE": "1"}

    def start() -> subprocess.Popen[bytes]:
        proc = start_server_process(port, env)
        from tests.helpers import wait_until_up

        wait_until_up(f"http://127.0.0.1:{port}")
        files = [
            ("files", ("PLANTEDNAME.dcm", dicom_files["CT_small.dcm"].read_bytes(), "application/dicom"))
        ]
        assert httpx.post(f"http://127.0.0.1:{port}/gradio_api/upload", files=files).status_code == 200
        return proc

    def runs() -> list[Path]:
        return sorted(tmp_path.glob(f"{scratch.PREFIX}*"))

    proc = start()
    assert len(runs()) == 1 and any(runs()[0].rglob("PLANTEDNAME.dcm"))
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert runs() == []
    proc = start()
    crashed = runs()
    proc.kill()  # kill -9: no shutdown, the folder stays behind
    proc.wait(30)
    assert runs() == crashed
    proc = start()  # the next server sweeps it
    assert crashed[0] not in runs() and len(runs()) == 1
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert runs() == []


@pytest.mark.slow
def test_sigterm_stops_answers_still_streaming_after_the_grace(
    tiny_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """A server asked to stop no longer waits for its longest answer: open answers get
    MEDVLAB_SHUTDOWN_GRACE_S more seconds, then they are cancelled and the server exits."""
    import signal
    import time

    from tests.helpers import wait_until_up

    port = free_port()
    env = {
        **os.environ,
        "MEDVLAB_CACHE_DIR": str(cache_dir),
        "MEDVLAB_DATA_DIR": str(tmp_path / "data"),
        "MEDVLAB_SHUTDOWN_GRACE_S": "1",
        "HF_HUB_OFFLINE": "1",
        "TMPDIR": str(tmp_path),
    }
    proc = start_server_process(port, env, "--no-ui")
    url = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    streaming = threading.Event()

    def read() -> None:
        body = {
            "model": "tiny",
            "stream": True,
            "max_tokens": 8000,
            "min_tokens": 8000,  # about 25 s of tokens here: far longer than the grace
            "messages": [{"role": "user", "content": "Long."}],
        }
        try:
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
                for line in r.iter_lines():
                    lines.append(line)
                    streaming.set()
        except httpx.HTTPError as exc:  # the connection ends mid-answer
            lines.append(repr(exc))

    try:
        wait_until_up(url)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert streaming.wait(60)
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        stopped_after = time.monotonic() - asked
        reader.join(20)
    finally:
        proc.kill()
    assert stopped_after < 8, stopped_after  # it waited for the whole answer before
    assert "data: [DONE]" not in lines and not reader.is_alive()
