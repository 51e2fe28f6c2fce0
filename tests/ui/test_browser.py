"""A real browser (Debian's Chromium driven by Playwright) against the running lab with the tiny model.

Uploads a real multi-frame DICOM (pydicom's enhanced MR), moves the slice slider, asks a question, watches
the answer stream in, exports the PDF report, and saves a screenshot to ``artifacts/browser/``.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest

from medvlab.vlm.prompting import DISCLAIMERS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[2] / "artifacts" / "browser"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

RECORD_CHAT_CHANGES = """
() => {
  window.__chatStates = [];
  const chat = document.querySelector('#chat');
  new MutationObserver(() => window.__chatStates.push(chat.innerText.length))
    .observe(chat, {subtree: true, childList: true, characterData: true});
}
"""


def launch(playwright: Any) -> Any:
    """Debian's Chromium, offline-friendly (no sandbox in containers, no background network)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
    )


def test_lab_in_a_real_browser(live_server: str, dicom_files: dict[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(live_server) else outside.append(r.url))
        page.goto(f"{live_server}/")
        page.wait_for_selector("#files")

        # upload a real DICOM (10-frame enhanced MR): info, preview and slice slider appear
        page.set_input_files("#files input[type=file]", str(dicom_files["emri_small.dcm"]))
        page.wait_for_selector("#preview img", timeout=30_000)
        page.wait_for_function("document.querySelector('#image-info').innerText.includes('MR')")
        assert "10 × 64 × 64" in page.inner_text("#image-info")
        first = page.get_attribute("#preview img", "src")

        # move the slice slider: the picture changes
        number = page.locator("#slice input[type=number]")
        number.fill("2")
        number.press("Enter")
        page.wait_for_function(
            "src => document.querySelector('#preview img').getAttribute('src') !== src",
            arg=first,
            timeout=15_000,
        )

        # ask: the answer streams into the chat and ends with the disclaimer
        page.evaluate(RECORD_CHAT_CHANGES)
        page.fill("#question textarea", "Describe this MR series.")
        page.click("#send")
        page.wait_for_function(
            "t => document.querySelector('#chat').innerText.includes(t)",
            arg=DISCLAIMERS["en"][2:40],
            timeout=60_000,
        )
        states = page.evaluate("window.__chatStates")
        assert len(set(states)) >= 2  # the text arrived in more than one piece

        # export the PDF report and fetch it
        page.click("#export")
        link = page.wait_for_selector("#report a[href]", timeout=60_000)
        pdf = page.request.get(link.get_attribute("href") or "").body()
        assert pdf.startswith(b"%PDF")
        (ARTIFACTS / "report.pdf").write_bytes(pdf)

        page.screenshot(path=str(ARTIFACTS / "lab.png"), full_page=True)
        browser.close()
    assert outside == []  # the page fetched nothing from outside the lab
    assert (ARTIFACTS / "lab.png").stat().st_size > 10_000


def test_segmentation_overlay_and_grounded_answer_in_a_real_browser(
    live_server: str, brain_data: dict[str, Path]
) -> None:
    """Upload Colin27, segment: the mask is drawn on the slice, volumes listed, and the answer cites them."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{live_server}/")
        page.wait_for_selector("#files")
        page.set_input_files("#files input[type=file]", str(brain_data["test_image"]))
        page.wait_for_function(
            "document.querySelector('#image-info').innerText.includes('NIfTI')", timeout=60_000
        )
        before = page.get_attribute("#preview img", "src")
        page.click("#segment")
        page.wait_for_function(
            "document.querySelector('#volumes').innerText.includes('brain')", timeout=120_000
        )
        page.wait_for_function(
            "src => document.querySelector('#preview img').getAttribute('src') !== src", arg=before
        )
        table = page.inner_text("#volumes")
        assert "brain" in table and "mL" in table
        page.check("#use-volumes input")
        page.fill("#question textarea", "How large is the brain?")
        page.click("#send")
        page.wait_for_function(
            "t => document.querySelector('#chat').innerText.includes(t)",
            arg=DISCLAIMERS["en"],
            timeout=120_000,
        )
        chat = page.inner_text("#chat")
        assert "Measurements (brain-mask" in chat and "brain:" in chat and "mL" in chat
        page.screenshot(path=str(ARTIFACTS / "segmentation.png"), full_page=True)
        browser.close()


def test_segmenting_an_uploaded_dicom_series_offers_a_dicom_seg(
    live_server: str, brain_data: dict[str, Path]
) -> None:
    """All 181 files of a series dropped in the browser: the SEG offered for download references them."""
    import highdicom as hd
    import pydicom
    from playwright.sync_api import sync_playwright

    files = sorted(brain_data["test_dicom"].iterdir())
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{live_server}/")
        page.wait_for_selector("#files")
        page.set_input_files("#files input[type=file]", [str(f) for f in files])
        page.wait_for_function(
            "document.querySelector('#image-info').innerText.includes('181 slices')", timeout=120_000
        )
        page.click("#segment")
        link = page.wait_for_selector("#seg-files a[href*='seg.dcm']", timeout=120_000)
        assert link is not None
        data = page.request.get(link.get_attribute("href") or "").body()
        assert page.query_selector("#seg-files a[href*='mask.nii.gz']") is not None
        browser.close()
    seg = hd.seg.segread(io.BytesIO(data))
    sources = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    referenced = {
        str(i.ReferencedSOPInstanceUID)
        for s in seg.ReferencedSeriesSequence
        for i in s.ReferencedInstanceSequence
    }
    assert referenced and referenced <= sources
