"""Feedback and adapter routes: ratings stored through the API, adapters swapped without a restart."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from fastapi.testclient import TestClient

from medvlab.config import Settings
from medvlab.server.app import create_app
from medvlab.services import Lab


def uri(path: Path) -> str:
    return "data:application/dicom;base64," + base64.b64encode(path.read_bytes()).decode()


def test_feedback_through_the_api(dicom_files: dict[str, Path], tmp_path: Path, cache_dir: Path) -> None:
    lab = Lab(Settings(model="tiny", cache_dir=cache_dir, data_dir=tmp_path / "data", max_new_tokens=4))
    with TestClient(create_app(lab, ui=False)) as tc:
        body = {
            "image": uri(dicom_files["RG1_UNCI.dcm"]),
            "question": "Any effusion?",
            "answer": "Large effusion.",
            "rating": -1,
            "better_answer": "No effusion.",
        }
        r = tc.post("/v1/feedback", json=body)
        assert r.status_code == 200 and r.json() == {"id": 1, "total": 1}
        bad = tc.post("/v1/feedback", json={**body, "rating": 3})
        assert bad.status_code == 400
        not_image = {**body, "image": "data:text/plain;base64," + base64.b64encode(b"hello").decode()}
        assert tc.post("/v1/feedback", json=not_image).status_code == 415
        lines = tc.get("/v1/feedback/export", params={"format": "dpo"}).text.splitlines()
        pair = json.loads(lines[0])
        assert len(lines) == 1 and pair["chosen"] == "No effusion." and pair["rejected"] == "Large effusion."
        assert Path(pair["images"][0]).exists()
    assert Lab(Settings(model="tiny", cache_dir=cache_dir, data_dir=tmp_path / "data")).feedback.count() == 1


def test_adapter_hot_swap(sft_adapter: Path, dicom_files: dict[str, Path], cache_dir: Path) -> None:
    lab = Lab(
        Settings(model="tiny", cache_dir=cache_dir, allowed_paths=[sft_adapter.parent], max_new_tokens=8)
    )
    msgs = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": uri(dicom_files["RG1_UNCI.dcm"])}},
                {"type": "text", "text": "Is there a pneumothorax?"},
            ],
        }
    ]

    def ask(tc: TestClient) -> str:
        r = tc.post("/v1/chat/completions", json={"model": "tiny", "messages": msgs})
        return str(r.json()["choices"][0]["message"]["content"])

    with TestClient(create_app(lab, ui=False)) as tc:
        base = ask(tc)
        r = tc.post("/v1/adapters", json={"path": str(sft_adapter)})
        assert r.status_code == 200 and r.json()["adapter"] == str(sft_adapter.resolve())
        assert tc.get("/healthz").json()["adapter"] == str(sft_adapter.resolve())
        tuned = ask(tc)
        assert tuned != base  # the adapter changed the answer, without a restart
        assert tc.delete("/v1/adapters").json()["adapter"] is None
        assert ask(tc) == base  # and the base model is back
        r = tc.post("/v1/adapters", json={"path": "/etc"})
        assert r.status_code == 403 and "MEDVLAB_ALLOWED_PATHS" in r.json()["error"]["message"]
