"""The Gradio web UI through gradio_client against the running server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from medvlab.vlm.prompting import DISCLAIMERS


@pytest.fixture(scope="module")
def ui(live_server: str) -> Client:
    return Client(f"{live_server}/", verbose=False)


def test_page_is_served_at_root(live_server: str) -> None:
    page = httpx.get(f"{live_server}/")
    assert page.status_code == 200 and "gradio" in page.text.lower()
    assert "fonts.googleapis.com" not in page.text  # no outbound font requests


def test_ask_endpoint_streams_an_answer(ui: Client, dicom_files: dict[str, Path]) -> None:
    job = ui.submit(
        handle_file(str(dicom_files["RG1_UNCI.dcm"])), "Any effusion?", "lung", 4, 8, api_name="/ask"
    )
    partials = list(job)
    final = job.result()
    assert final.endswith(DISCLAIMERS["en"])
    assert len(partials) >= 2 and all(final.startswith(p) for p in partials)  # growing text: real streaming


def test_load_endpoint_describes_a_series(ui: Client, dicom_files: dict[str, Path], tmp_path: Path) -> None:
    from tests.helpers import write_series

    write_series(dicom_files["CT_small.dcm"], tmp_path / "s", n=6)
    files = [handle_file(str(p)) for p in sorted((tmp_path / "s").glob("*.dcm"))]
    info, preview, slider, plane, level, width, zoom = ui.predict(files, "lung", "English", api_name="/load")
    assert info == "**DICOM** · CT · 6 file(s) · 6 slices · 6 × 128 × 128 · spacing 2.5 × 0.6615 × 0.6615 mm"
    assert (
        plane["value"] == "axial" and zoom == 1 and (level["value"], width["value"]) == (-600, 1500)
    )  # the lung window
    picture = preview["value"]  # the picture comes with its label ("Axial · slice 4/6")
    assert Path(picture if isinstance(picture, str) else picture["path"]).exists()
    assert preview["label"] == "Axial · slice 4/6"
    assert slider["value"] == 4 and slider["maximum"] == 6 and slider["visible"]  # middle slice, 1-based


def test_bad_upload_shows_the_error(ui: Client, tmp_path: Path) -> None:
    bad = tmp_path / "report.txt"
    bad.write_text("not an image")
    with pytest.raises(Exception, match="not a recognised medical image"):
        ui.predict([handle_file(str(bad))], "q", "auto", 4, 8, api_name="/ask")


def test_kb_search_endpoint(ui: Client, lab) -> None:  # type: ignore[no-untyped-def]
    from medvlab.kb.store import Snippet

    lab.kb.add([Snippet("Cardiomegaly", "The cardiac silhouette is enlarged.", "ui-test")])
    result = ui.predict("enlarged cardiac silhouette", api_name="/kb_search")
    assert "Cardiomegaly (ui-test)" in result
