"""The PACS panel in a real browser (Debian's Chromium) against the real Orthanc: search, pick the Colin27
study, open its series in the viewer. Screenshot: ``artifacts/browser/pacs.png``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medvlab.services import Lab
from tests.helpers import serve_in_thread
from tests.pacs.conftest import Orthanc, Studies
from tests.ui.test_browser import ARTIFACTS, CHROMIUM, launch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def pacs_server(orthanc: Orthanc, lab: Lab, cache_dir: Path) -> Iterator[str]:
    from medvlab.server.app import create_app

    pacs_lab = Lab(orthanc.settings(cache_dir=cache_dir), backend=lab.backend)
    with serve_in_thread(create_app(pacs_lab)) as url:
        yield url


def test_a_pacs_series_opens_in_the_viewer(pacs_server: str, studies: Studies) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{pacs_server}/")
        page.click("#pacs-button")  # the PACS tab
        page.fill("#pacs-patient textarea, #pacs-patient input", "COLIN27")
        page.click("#pacs-search")
        page.wait_for_function(
            "u => document.querySelector('#pacs-studies').innerText.includes(u)", arg=studies.colin_study
        )
        page.locator("#pacs-studies [data-testid=cell-0-0]").click()
        page.wait_for_function(
            "u => (document.querySelector('#pacs-series textarea, #pacs-series input') || {}).value === u",
            arg=studies.colin_series,
            timeout=60_000,
        )
        page.click("#pacs-open")
        page.wait_for_function(
            "document.querySelector('#image-info').innerText.includes('spacing')", timeout=120_000
        )
        info = page.inner_text("#image-info")
        assert "MR" in info and "91 × 109 × 91" in info, info
        assert page.get_attribute("#preview img", "src")
        assert studies.colin_series in page.inner_text("#pacs-status")
        page.screenshot(path=str(ARTIFACTS / "pacs.png"), full_page=True)
        browser.close()
