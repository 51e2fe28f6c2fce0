"""The language switch in a real browser (Debian's Chromium): every panel's texts change, and change back."""

from __future__ import annotations

from pathlib import Path

import pytest

from medvlab.ui.i18n import TEXT
from medvlab.vlm.prompting import DISCLAIMERS
from tests.ui.test_browser import ARTIFACTS, CHROMIUM, launch

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

SHOWN = {  # selector -> key of the text it shows, one per panel
    "#files": "files",
    "#segment": "segment",
    "#send": "send",
    "#send-feedback": "send_feedback",
    "#model-status": "model",
}


def test_switching_language_relabels_every_panel(live_server: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{live_server}/")
        page.wait_for_selector("#files")
        for label, language in (("中文", "zh"), ("English", "en")):
            page.locator("#lang label", has_text=label).click()
            t = TEXT[language]
            page.wait_for_function(
                "t => document.querySelector('#send').innerText.includes(t)", arg=t["send"], timeout=15_000
            )
            for selector, key in SHOWN.items():
                assert t[key] in page.inner_text(selector), (language, selector)
            body = page.inner_text("body")
            assert t["title"].lstrip("# ") in body
            assert t["kb"] in body and t["advanced"] in body  # the closed accordions' headers
            assert DISCLAIMERS[language][2:30] in body
            assert page.get_attribute("#question textarea", "placeholder") == t["placeholder"]
            if language == "zh":
                page.screenshot(path=str(ARTIFACTS / "lab-zh.png"), full_page=True)
        browser.close()
