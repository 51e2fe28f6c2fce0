"""``/healthz`` answers 503 while the model cannot load (the body still says why), 200 once it serves."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from medvlab.config import Settings
from medvlab.server.app import create_app
from medvlab.services import Lab


def test_healthz_is_503_while_the_model_cannot_load(tmp_path: Path) -> None:
    lab = Lab(Settings(model=str(tmp_path / "no-such-model"), cache_dir=tmp_path))
    with TestClient(create_app(lab, ui=False)) as tc:
        for _ in range(200):  # the model loads in the background
            r = tc.get("/healthz")
            if r.json()["status"] != "loading":
                break
            time.sleep(0.05)
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "degraded" and "does not exist" in body["model_error"]


def test_healthz_is_200_when_the_model_serves(lab: Lab) -> None:
    assert lab.backend is not None  # loaded (the session's tiny model)
    with TestClient(create_app(lab, ui=False)) as tc:
        r = tc.get("/healthz")
        assert r.status_code == 200 and r.json()["status"] == "ok"
