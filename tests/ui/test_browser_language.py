"""The language switch in a real browser (Debian's Chromium): every panel's texts change, and change back."""

from __future__ import annotations

import re
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


VISIBLE_TEXT = """
() => {
  // visible text of the page, leaving out what the user brought: the conversation, the question,
  // uploaded file names, and the bilingual language switch itself
  const skip = '#chat, #question, #files table, #seg-files table, #lang, #kb-results, #table td, ' +
    '#table [role=gridcell][data-testid$="-1"]';
  const out = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skip) || el.closest('script, style, svg')) continue;
    if (!el.checkVisibility || !el.checkVisibility()) continue;
    const box = el.getBoundingClientRect();
    if (box.width < 3 || box.height < 3) continue;  // screen-reader-only text (clipped to 1 px)
    const t = n.textContent.trim();
    if (t) out.push(t);
  }
  for (const el of document.querySelectorAll('input[placeholder], textarea[placeholder]')) {
    if (el.checkVisibility() && !el.closest(skip) && !el.value) out.push(el.placeholder);
  }
  return out.join('\\n');
}
"""

ALLOWED_ASCII = {  # names that stay as they are in Chinese text: formats, codes, units, model names
    "DICOM",
    "NIfTI",
    "PNG",
    "JPG",
    "JPEG",
    "SEG",
    "JSON",
    "PDF",
    "MedGemma",
    "medvlab",
    "MR",
    "CT",
    "mL",
    "mm",
    "tiny",
    "API",
    "DICOMweb",
    "PACS",
    "UID",
    "LoRA",
    "SFT",
    "DPO",
    "GRPO",
    "VQA",
    "JSONL",
    "txt",
    "md",
    "json",
    "csv",
    "KB",
    "RAS",
    "LPS",
}
CJK = re.compile(r"[\u3400-\u9fff\u3000-\u303f\uff00-\uffef]")


def english_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[A-Za-z][A-Za-z'-]*", text)} - ALLOWED_ASCII


def test_every_visible_text_is_in_the_chosen_language(live_server: str, dicom_files: dict[str, Path]) -> None:
    """中文 mode shows no English word (but names such as DICOM or MedGemma), English mode no Chinese
    character — with an image loaded, a structured answer in the table and attention maps shown."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{live_server}/")
        page.wait_for_selector("#files")
        page.locator("#lang label", has_text="中文").click()
        page.wait_for_function(
            "t => document.querySelector('#send').innerText.includes(t)", arg=TEXT["zh"]["send"]
        )
        page.set_input_files("#files input[type=file]", str(dicom_files["emri_small.dcm"]))
        page.wait_for_function(
            "document.querySelector('#image-info').innerText.includes('10 层')", timeout=60_000
        )
        page.check("#structured input")
        page.fill("#question textarea", "这是什么序列？")
        page.click("#send")
        page.wait_for_function(
            "document.querySelector('#table').innerText.includes('置信度')", timeout=120_000
        )
        page.click("#explain")
        page.wait_for_selector("#heatmaps img", timeout=120_000)
        page.wait_for_timeout(1000)
        zh_text = page.evaluate(VISIBLE_TEXT)
        page.screenshot(path=str(ARTIFACTS / "lab-zh-complete.png"), full_page=True)
        assert "第 1/10 层" in zh_text and "注意力" in zh_text
        # the findings table's rows are the model's answer (user content), but its field names are not
        table = page.inner_text("#table")
        assert all(
            name in table for name in ("字段", "内容", "所见", "部位", "大小", "印象", "置信度", "建议")
        )
        assert english_words(zh_text) == set(), sorted(english_words(zh_text))

        page.locator("#lang label", has_text="English").click()
        page.wait_for_function(
            "t => document.querySelector('#send').innerText.includes(t)", arg=TEXT["en"]["send"]
        )
        page.wait_for_function("document.querySelector('#table').innerText.includes('confidence')")
        page.wait_for_timeout(1000)
        en_text = page.evaluate(VISIBLE_TEXT)
        page.screenshot(path=str(ARTIFACTS / "lab-en-complete.png"), full_page=True)
        assert "slice 1/10" in en_text
        assert CJK.findall(en_text) == [], [line for line in en_text.splitlines() if CJK.search(line)]
        browser.close()
