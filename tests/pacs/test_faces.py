"""The PACS through the faces: ``medvlab pacs ...`` (in-process and as a real child process), the REST routes
(TestClient on the real app), and the web UI panel's handlers, all against the real Orthanc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from medvlab.cli.main import app as cli
from medvlab.services import Lab
from tests.helpers import free_port
from tests.pacs.conftest import Orthanc, Studies


def cli_env(orthanc: Orthanc, cache_dir: Path, pacs: dict[str, object] | None = None) -> dict[str, str]:
    endpoints = pacs or {"orthanc": orthanc.endpoint()}
    return {**os.environ, "MEDVLAB_PACS": json.dumps(endpoints), "MEDVLAB_CACHE_DIR": str(cache_dir)}


def test_cli_search_and_get(orthanc: Orthanc, studies: Studies, cache_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    env = cli_env(orthanc, cache_dir)
    found = runner.invoke(
        cli, ["pacs", "search", "--pacs", "orthanc", "--patient-id", "COLIN27", "--json"], env=env
    )
    assert found.exit_code == 0, found.output
    assert [s["study_uid"] for s in json.loads(found.output)] == [studies.colin_study]
    listed = runner.invoke(cli, ["pacs", "search", "--study", studies.colin_study], env=env)
    assert (
        studies.colin_series in listed.output and "MR" in listed.output and "91 instance(s)" in listed.output
    )
    got = runner.invoke(
        cli, ["pacs", "get", "--study", studies.colin_study, "-o", str(tmp_path / "s")], env=env
    )
    assert got.exit_code == 0, got.output
    assert "91x109x91" in got.output and f"wrote 91 file(s) to {tmp_path / 's'}" in got.output
    uids = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID) for p in (tmp_path / "s").iterdir()
    }
    assert uids == {studies.colin_series}


def test_cli_errors_are_one_line_with_the_fix(orthanc: Orthanc, studies: Studies, cache_dir: Path) -> None:
    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "medvlab.cli.main", "pacs", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    missing = run("get", "--study", "1.2.3.4", env=cli_env(orthanc, cache_dir))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "error: Study 1.2.3.4 is not in PACS 'orthanc'. Fix: Check the UID, or list what the PACS holds: "
        "medvlab pacs search --pacs NAME."
    ]
    down_url = f"http://127.0.0.1:{free_port()}/dicom-web"
    down = run("search", env=cli_env(orthanc, cache_dir, {"orthanc": down_url}))
    assert down.returncode == 2 and f"Start Orthanc (or the PACS) at {down_url}" in down.stderr
    typo = run("search", "--pacs", "ortanc", env=cli_env(orthanc, cache_dir))
    assert typo.returncode == 2 and "did you mean 'orthanc'" in typo.stderr and "Traceback" not in typo.stderr


@pytest.fixture(scope="module")
def api(orthanc: Orthanc, lab: Lab, cache_dir: Path) -> Iterator[TestClient]:
    from medvlab.server.app import create_app

    pacs_lab = Lab(orthanc.settings(cache_dir=cache_dir), backend=lab.backend)
    with TestClient(create_app(pacs_lab, ui=False, preload=False)) as client:
        yield client


def test_rest_search_get_and_ask(api: TestClient, orthanc: Orthanc, studies: Studies) -> None:
    assert api.get("/v1/pacs").json()["pacs"][0]["name"] == "orthanc"
    r = api.get("/v1/pacs/orthanc/studies", params={"modality": "CT"})
    assert r.status_code == 200 and [s["study_uid"] for s in r.json()["studies"]] == [
        str(studies.ct.StudyInstanceUID)
    ]
    r = api.get(f"/v1/pacs/orthanc/studies/{studies.colin_study}/series")
    assert [s["series_uid"] for s in r.json()["series"] if s["modality"] == "MR"] == [studies.colin_series]
    r = api.post("/v1/pacs/orthanc/get", json={"study": studies.colin_study})
    assert (
        r.status_code == 200 and r.json()["image"]["shape"] == [91, 109, 91] and r.json()["instances"] == 91
    )
    study = str(studies.cxr.StudyInstanceUID)
    r = api.post(
        "/v1/pacs/orthanc/ask", json={"study": study, "question": "Any pneumothorax?", "store_sr": True}
    )
    assert r.status_code == 200, r.text
    stored = r.json()["stored"]
    assert stored["study_uid"] == study and [i["kind"] for i in stored["instances"]] == ["SR"]
    series = api.get(f"/v1/pacs/orthanc/studies/{study}/series").json()["series"]
    assert stored["instances"][0]["series_uid"] in {s["series_uid"] for s in series}


def test_rest_errors_are_json_with_statuses(api: TestClient, orthanc: Orthanc, studies: Studies) -> None:
    r = api.post("/v1/pacs/orthanc/segment", json={"study": "1.2.3.4"})
    assert r.status_code == 404 and "not in PACS 'orthanc'" in r.json()["error"]["message"]
    r = api.get("/v1/pacs/ortanc/studies")
    assert r.status_code == 400 and "did you mean 'orthanc'" in r.json()["error"]["message"]
    r = api.post("/v1/pacs/orthanc/segment", json={"study": studies.colin_study, "model": "/etc/passwd"})
    assert r.status_code == 403
    r = api.post("/v1/pacs/orthanc/get", json={"study": "../../etc"})
    assert r.status_code == 400  # not a UID
    r = api.get("/v1/pacs/orthanc/studies", params={"date": "yesterday"})
    assert r.status_code == 400 and "YYYYMMDD" in r.json()["error"]["message"]


def test_ui_panel_searches_and_hands_the_series_to_the_viewer(
    orthanc: Orthanc, lab: Lab, cache_dir: Path, studies: Studies
) -> None:
    import gradio as gr

    from medvlab.ui.panels import pacs as panel

    pacs_lab = Lab(orthanc.settings(cache_dir=cache_dir), backend=lab.backend)
    rows = panel.search(pacs_lab, "orthanc", "COLIN27", "", "", "")
    assert [r[0] for r in rows] == [studies.colin_study]
    paths, message, seg = panel.open_series(
        pacs_lab, "orthanc", studies.colin_study, "", "中文", progress=gr.Progress()
    )
    try:
        assert len(paths) == 91 and seg is None and "91" in message and studies.colin_series in message
        assert pacs_lab.load_image([Path(p) for p in paths]).pixels.shape == (91, 109, 91)
    finally:
        for p in paths:
            Path(p).unlink(missing_ok=True)
    with pytest.raises(gr.Error, match="请先选择"):
        panel.segment(pacs_lab, "orthanc", "", "", "中文")
