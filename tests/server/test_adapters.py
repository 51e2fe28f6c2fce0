"""Several LoRA adapters served at once by the in-process engine: loaded and unloaded at run time through
``/v1/adapters``, chosen per request by ``model``, batched per adapter."""

from __future__ import annotations

import base64
import concurrent.futures
from pathlib import Path

from fastapi.testclient import TestClient

from medvlab.config import Settings
from medvlab.server.app import create_app
from medvlab.services import Lab


def ask(tc: TestClient, image: Path, model: str) -> tuple[int, str, str]:
    uri = "data:application/dicom;base64," + base64.b64encode(image.read_bytes()).decode()
    content = [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": "Pneumothorax?"}]
    r = tc.post(
        "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": content}]}
    )
    if r.status_code != 200:
        return r.status_code, r.json()["error"]["message"], ""
    return 200, r.json()["choices"][0]["message"]["content"], r.json()["model"]


def test_named_adapters_chosen_per_request(
    sft_adapter: Path, dicom_files: dict[str, Path], cache_dir: Path
) -> None:
    settings = Settings(
        model="tiny", cache_dir=cache_dir, allowed_paths=[sft_adapter.parent], max_new_tokens=8
    )
    cxr = dicom_files["RG1_UNCI.dcm"]
    with TestClient(create_app(Lab(settings), ui=False)) as tc:
        base = ask(tc, cxr, "tiny")[1]
        r = tc.post("/v1/adapters", json={"name": "cxr", "path": str(sft_adapter)})
        assert r.status_code == 200
        assert r.json()["adapters"] == [{"name": "cxr", "path": str(sft_adapter.resolve())}]
        assert r.json()["adapter"] is None  # loading by name leaves the active one alone
        models = tc.get("/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["tiny", "cxr"] and models[1]["parent"] == "tiny"

        code, tuned, named = ask(tc, cxr, "cxr")
        assert code == 200 and named == "cxr" and tuned != base  # the adapter answers
        assert ask(tc, cxr, "tiny")[1] == base  # and the base model still answers by its name
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # mixed requests batch per adapter
            answers = list(pool.map(lambda m: ask(tc, cxr, m)[1], ["tiny", "cxr", "tiny", "cxr"]))
        assert answers == [base, tuned, base, tuned]

        code, message, _ = ask(tc, cxr, "ct")
        assert code == 404 and "tiny" in message and "cxr" in message  # the names a request may use
        assert tc.post("/v1/adapters", json={"name": "cxr", "path": str(sft_adapter)}).status_code == 400
        r = tc.post("/v1/adapters", json={"name": "a b/c", "path": str(sft_adapter)})
        assert r.status_code == 400 and "letters, digits" in r.json()["error"]["message"]
        r = tc.post("/v1/adapters", json={"name": "etc", "path": "/etc"})
        assert r.status_code == 403 and "MEDVLAB_ALLOWED_PATHS" in r.json()["error"]["message"]

        assert tc.delete("/v1/adapters", params={"name": "cxr"}).json()["adapters"] == []
        assert ask(tc, cxr, "cxr")[0] == 404
        assert tc.delete("/v1/adapters", params={"name": "cxr"}).status_code == 404
        assert ask(tc, cxr, "tiny")[1] == base


def test_adapters_named_at_start(sft_adapter: Path, dicom_files: dict[str, Path], cache_dir: Path) -> None:
    """``--lora NAME=FOLDER`` / ``MEDVLAB_LORAS``: served from the first request."""
    settings = Settings(model="tiny", cache_dir=cache_dir, loras={"cxr": str(sft_adapter)}, max_new_tokens=8)
    with TestClient(create_app(Lab(settings), ui=False)) as tc:
        assert [a["name"] for a in tc.get("/v1/adapters").json()["adapters"]] == ["cxr"]
        assert ask(tc, dicom_files["RG1_UNCI.dcm"], "cxr")[0] == 200
