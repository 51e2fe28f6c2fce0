"""The REST and OpenAI-compatible API, driven by the official openai client against a running server."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from medvlab.config import Settings
from medvlab.server.app import create_app
from medvlab.services import Lab
from medvlab.vlm.prompting import DISCLAIMERS


def data_uri(path: Path, mime: str = "application/dicom") -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


@pytest.fixture(scope="module")
def client(live_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server}/v1", api_key="unused", max_retries=0)


def ask_messages(uri: str, question: str) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": question}],
        }
    ]


def test_health_and_models(live_server: str, client: openai.OpenAI) -> None:
    health = httpx.get(f"{live_server}/healthz").json()
    assert health["status"] == "ok" and health["model_loaded"] is True
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_chat_completion_streaming_matches_non_streaming(
    client: openai.OpenAI, dicom_files: dict[str, Path]
) -> None:
    msgs = ask_messages(data_uri(dicom_files["RG1_UNCI.dcm"]), "Describe the chest X-ray.")
    full = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=12)
    text = full.choices[0].message.content or ""
    assert text.endswith(DISCLAIMERS["en"])
    assert (
        full.usage is not None and full.usage.prompt_tokens > 16 and 1 <= full.usage.completion_tokens <= 12
    )
    stream = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=12, stream=True)
    deltas, finish = [], None
    for chunk in stream:
        if chunk.choices:
            deltas.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert len([d for d in deltas if d]) >= 2  # it really streamed
    assert "".join(deltas) == text  # greedy decoding: same answer either way
    assert finish in ("stop", "length")


def test_chinese_and_extensions(client: openai.OpenAI, dicom_files: dict[str, Path]) -> None:
    out = client.chat.completions.create(
        model="tiny",
        messages=ask_messages(data_uri(dicom_files["emri_small.dcm"]), "这个序列显示了什么？"),
        max_tokens=6,
        extra_body={"window": "brain", "max_slices": 4},
    )
    assert (out.choices[0].message.content or "").endswith(DISCLAIMERS["zh"])


def test_png_data_uri(client: openai.OpenAI, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (10, 200, 30)).save(tmp_path / "p.png")
    out = client.chat.completions.create(
        model="tiny",
        messages=ask_messages(data_uri(tmp_path / "p.png", "image/png"), "What colour?"),
        max_tokens=4,
    )
    assert out.choices[0].message.content


def test_errors_are_4xx_with_a_fix(
    client: openai.OpenAI, dicom_files: dict[str, Path], live_server: str
) -> None:
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    not_image = "data:text/plain;base64," + base64.b64encode(b"hello world, not an image").decode()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="tiny", messages=ask_messages(not_image, "q"))
    assert info.value.status_code == 415 and "Fix:" in str(info.value)
    cut = dicom_files["CT_small.dcm"].read_bytes()[:3000]
    truncated = "data:application/dicom;base64," + base64.b64encode(cut).decode()
    with pytest.raises(openai.UnprocessableEntityError, match="CT|decode|parse"):
        client.chat.completions.create(model="tiny", messages=ask_messages(truncated, "q"))
    with pytest.raises(openai.PermissionDeniedError, match="Remote image URLs"):
        client.chat.completions.create(model="tiny", messages=ask_messages("https://example.org/x.png", "q"))
    with pytest.raises(openai.PermissionDeniedError, match="not allowed"):
        client.chat.completions.create(model="tiny", messages=ask_messages("/etc/passwd", "q"))
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.chat.completions.create(
            model="tiny", messages=ask_messages(data_uri(dicom_files["CT_small.dcm"]), " ")
        )
    # the server is still serving after all that
    assert httpx.get(f"{live_server}/healthz").status_code == 200


def test_analyze_multipart(live_server: str, dicom_files: dict[str, Path]) -> None:
    with dicom_files["CT_small.dcm"].open("rb") as fh:
        r = httpx.post(
            f"{live_server}/v1/analyze",
            files={"file": ("ct.dcm", fh, "application/dicom")},
            data={"question": "Which organ?", "max_new_tokens": "5"},
            timeout=120,
        )
    assert r.status_code == 200 and r.text.endswith(DISCLAIMERS["en"])


def test_validation_errors_are_openai_shaped(lab: Lab) -> None:
    with TestClient(create_app(lab, ui=False, preload=False)) as tc:
        r = tc.post("/v1/chat/completions", json={"model": "tiny", "messages": []})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = tc.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
        )
        assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]


def test_server_without_weights_still_serves_and_explains(tmp_path: Path) -> None:
    lab = Lab(Settings(model=str(tmp_path / "no-such-model")))
    with TestClient(create_app(lab, ui=False)) as tc:
        for _ in range(100):  # the model loads in the background; the server answers meanwhile
            health = tc.get("/healthz").json()
            if health["status"] != "loading":
                break
            time.sleep(0.05)
        assert health["status"] == "degraded" and "does not exist" in health["model_error"]
        r = tc.post(
            "/v1/chat/completions",
            json={"model": lab.model_id, "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 503 and "Fix:" in r.json()["error"]["message"]
