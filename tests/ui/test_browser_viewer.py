"""The viewer in a real browser (Debian's Chromium): a 181-file DICOM series stays in view, slices step by
slider, mouse wheel and arrow keys, planes, window/level and zoom change the picture, the mask and the
attention map are overlays that can be switched off, and slice numbers agree between the viewer and the
attention panels. Screenshots go to ``artifacts/browser/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from medvlab.vlm.prompting import DISCLAIMERS
from tests.ui.test_browser import ARTIFACTS, CHROMIUM, launch

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def src(page: Any) -> str:
    return page.get_attribute("#preview img", "src") or ""


def label(page: Any) -> str:
    return page.inner_text("#preview label, #preview [data-testid=block-label]").strip()


def slider_value(page: Any) -> int:
    return int(page.input_value("#slice input[type=number]"))


def wait_new_picture(page: Any, before: str, timeout: int = 30_000) -> str:
    page.wait_for_function(
        "s => { const i = document.querySelector('#preview img'); return i && i.getAttribute('src') !== s; }",
        arg=before,
        timeout=timeout,
    )
    page.wait_for_timeout(300)  # a later event of the same gesture may still replace it
    return src(page)


def wait_label(page: Any, pattern: str, timeout: int = 30_000) -> str:
    page.wait_for_function(
        "p => { const l = document.querySelector('#preview [data-testid=block-label]');"
        " return l && new RegExp(p).test(l.innerText); }",
        arg=pattern,
        timeout=timeout,
    )
    return label(page)


def set_number(page: Any, selector: str, value: float) -> None:
    box = page.locator(f"{selector} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_viewer_stays_in_view_and_every_control_changes_the_picture(
    live_server: str, brain_data: dict[str, Path]
) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    files = sorted(brain_data["test_dicom"].iterdir())
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(live_server) else outside.append(r.url))
        page.goto(f"{live_server}/")
        page.wait_for_selector("#files")
        page.set_input_files("#files input[type=file]", [str(f) for f in files])
        page.wait_for_function(
            "document.querySelector('#image-info').innerText.includes('spacing')", timeout=120_000
        )
        info = page.inner_text("#image-info")
        assert "DICOM · MR · 181 file(s) · 181 slices · 181 × 217 × 181 · spacing 1 × 1 × 1 mm" in info, info
        # the picture stays near the top: the file list does not push it down
        box = page.locator("#preview").bounding_box()
        assert box is not None and box["y"] < 700, box
        assert wait_label(page, r"Axial · slice 91/181") and slider_value(page) == 91
        page.screenshot(path=str(ARTIFACTS / "viewer-series.png"))

        # mouse wheel over the picture, then the arrow keys, step the slice
        first = src(page)
        page.locator("#preview").hover()
        page.mouse.wheel(0, 120)
        wait_label(page, r"slice 92/181")
        assert slider_value(page) == 92 and wait_new_picture(page, first) != first
        page.locator("#image-info").click()  # focus off any input: keys go to the page
        page.keyboard.press("ArrowUp")
        page.keyboard.press("ArrowUp")
        wait_label(page, r"slice 90/181")
        assert slider_value(page) == 90

        # planes: coronal starts at its middle plane (217 rows), sagittal at its (181 columns)
        before = src(page)
        page.locator("#plane label", has_text="Coronal").click()
        assert wait_label(page, r"Coronal · slice 109/217")
        coronal = wait_new_picture(page, before)
        page.locator("#plane label", has_text="Sagittal").click()
        assert wait_label(page, r"Sagittal · slice 91/181")
        wait_new_picture(page, coronal)
        page.screenshot(path=str(ARTIFACTS / "viewer-sagittal.png"))
        page.locator("#plane label", has_text="Axial").click()
        wait_label(page, r"Axial · slice 91/181")

        # free window/level: the window becomes "C,W" and the picture changes; zoom too
        before = src(page)
        set_number(page, "#width", 200)
        page.wait_for_function(
            "document.querySelector('#window input').value.endsWith(',200')", timeout=15_000
        )
        before = wait_new_picture(page, before)
        set_number(page, "#zoom", 2)
        before = wait_new_picture(page, before)

        # segmentation mask as an overlay that can be switched off and on
        page.click("#segment")
        wait_label(page, r"segmentation mask")
        masked = src(page)
        page.locator("#overlays label", has_text="segmentation mask").click()
        page.wait_for_function(
            "() => !document.querySelector('#preview [data-testid=block-label]').innerText.includes('mask')"
        )
        assert wait_new_picture(page, masked) != masked
        page.locator("#overlays label", has_text="segmentation mask").click()
        wait_label(page, r"segmentation mask")

        # ask, explain: the attention panels carry the volume's slice numbers, the viewer draws one
        page.fill("#question textarea", "Describe this MR series.")
        page.click("#send")
        page.wait_for_function(
            "t => document.querySelector('#chat').innerText.includes(t)",
            arg=DISCLAIMERS["en"][2:40],
            timeout=120_000,
        )
        page.click("#explain")
        page.wait_for_selector("#heatmaps img", timeout=120_000)
        captions = page.evaluate(
            "[...document.querySelectorAll('#heatmaps .caption-label')].map(e => e.innerText)"
        )
        numbers = [int(m.group(1)) for c in captions if (m := re.match(r"attention · slice (\d+)/181", c))]
        assert numbers and numbers[0] == 1 and numbers[-1] == 181, captions  # volume slices, not 1..8
        reached = [n for n, c in zip(numbers, captions, strict=True) if "no attention" not in c]
        assert reached, captions  # the tiny model's sliding window reaches at least the last slices
        set_number(page, "#slice", reached[0])
        assert wait_label(page, rf"slice {reached[0]}/181 · segmentation mask · attention map$")
        missed = [n for n in numbers if n not in reached]
        if missed:  # a slice without a map says where the nearest one is
            set_number(page, "#slice", missed[0])
            wait_label(page, r"attention maps on other slices \(nearest: \d+\)")
        page.screenshot(path=str(ARTIFACTS / "viewer-overlays.png"), full_page=True)
        browser.close()
    assert outside == []
