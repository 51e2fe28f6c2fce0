"""medvlab's own routes and the structured mode of the OpenAI API, against the running server."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import openai
import pydicom
from pypdf import PdfReader

from medvlab.vlm.structured import FIELDS

DATA = Path(__file__).parents[1] / "data" / "reports"


def uri(path: Path) -> str:
    return "data:application/dicom;base64," + base64.b64encode(path.read_bytes()).decode()


def test_json_response_format_always_parses(live_server: str, dicom_files: dict[str, Path]) -> None:
    client = openai.OpenAI(base_url=f"{live_server}/v1", api_key="unused", max_retries=0)
    out = client.chat.completions.create(
        model="tiny",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": uri(dicom_files["CT_small.dcm"])}},
                    {"type": "text", "text": "Report the findings."},
                ],
            }
        ],
        response_format={"type": "json_object"},
        max_tokens=16,
    )
    data = json.loads(out.choices[0].message.content or "")
    assert set(FIELDS) <= set(data) and data["confidence"] in ("low", "moderate", "high")
    assert "not a medical diagnosis" in data["disclaimer"]


def test_custom_json_schema(live_server: str) -> None:
    schema = {"type": "object", "properties": {"fracture": {"type": "boolean"}}, "required": ["fracture"]}
    r = httpx.post(
        f"{live_server}/v1/chat/completions",
        timeout=120,
        json={
            "model": "tiny",
            "messages": [{"role": "user", "content": "Is there a fracture?"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "fx", "schema": schema}},
        },
    )
    assert r.status_code == 200
    assert isinstance(json.loads(r.json()["choices"][0]["message"]["content"])["fracture"], bool)


def test_kb_routes_and_grounded_chat(live_server: str, dicom_files: dict[str, Path]) -> None:
    snippets = [
        {"title": "肝囊肿", "text": "肝右叶见类圆形低密度灶，考虑肝囊肿。", "source": "prior-1"},
        {
            "title": "Rib fracture",
            "text": "Displaced fracture of the right seventh rib.",
            "source": "prior-2",
        },
    ]
    r = httpx.post(f"{live_server}/v1/kb/snippets", json={"snippets": snippets}, timeout=60)
    assert r.status_code == 200 and r.json()["added"] == 2
    hits = httpx.get(f"{live_server}/v1/kb/search", params={"q": "肝脏低密度灶", "k": 1}, timeout=60).json()[
        "hits"
    ]
    assert hits[0]["title"] == "肝囊肿" and hits[0]["citation"] == "[1] 肝囊肿 (prior-1)"
    r = httpx.post(
        f"{live_server}/v1/chat/completions",
        timeout=120,
        json={
            "model": "tiny",
            "max_tokens": 6,
            "kb": 1,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": uri(dicom_files["CT_small.dcm"])}},
                        {"type": "text", "text": "肝脏有低密度灶吗？"},
                    ],
                }
            ],
        },
    )
    assert "参考资料:\n[1] 肝囊肿 (prior-1)" in r.json()["choices"][0]["message"]["content"]
    bad = httpx.post(f"{live_server}/v1/kb/snippets", json={"snippets": []}, timeout=30)
    assert bad.status_code == 400


def test_explain_route(live_server: str, dicom_files: dict[str, Path]) -> None:
    r = httpx.post(
        f"{live_server}/v1/explain",
        timeout=120,
        json={
            "image": uri(dicom_files["emri_small.dcm"]),
            "question": "Where is it?",
            "answer": "In the middle.",
            "max_slices": 2,
        },
    )
    assert r.status_code == 200
    maps = r.json()["heatmaps"]
    assert [m["label"] for m in maps] == ["attention · slice 1/10", "attention · slice 10/10"]
    assert base64.b64decode(maps[0]["png"].split(",", 1)[1]).startswith(b"\x89PNG")


def test_report_route_pdf_and_dicom(live_server: str, dicom_files: dict[str, Path]) -> None:
    body = {
        "image": uri(dicom_files["CT_small.dcm"]),
        "question": "Any lesion?",
        "max_new_tokens": 6,
        "structured": True,
        "heatmap": True,
    }
    r = httpx.post(f"{live_server}/v1/reports", json=body, timeout=300)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    text = "".join(p.extract_text() or "" for p in PdfReader(io.BytesIO(r.content)).pages)
    assert "Any lesion?" in text and "Structured findings" in text and "Confidence" in text
    r = httpx.post(
        f"{live_server}/v1/reports",
        json={**body, "structured": False, "heatmap": False, "format": "dicom", "answer": "Given answer."},
        timeout=300,
    )
    ds = pydicom.dcmread(io.BytesIO(r.content))
    assert (
        ds.Modality == "DOC"
        and ds.StudyInstanceUID == pydicom.dcmread(dicom_files["CT_small.dcm"]).StudyInstanceUID
    )
    bad = httpx.post(
        f"{live_server}/v1/reports", json={**body, "image": "https://example.org/x.dcm"}, timeout=30
    )
    assert bad.status_code == 403
