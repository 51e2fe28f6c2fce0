"""The Train tab in a real browser (Debian's Chromium): upload records, start a 2-step SFT run on the tiny
model, watch it finish with its curves and log, load the adapter into the chat, and see the tab in Chinese.
Screenshot: ``artifacts/browser/train.png``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from medvlab.config import Settings
from medvlab.server.app import create_app
from medvlab.services import Lab
from medvlab.ui.i18n import TEXT
from medvlab.ui.panels.train import CURVE_COLORS
from tests.helpers import serve_in_thread
from tests.ui.test_browser import ARTIFACTS, CHROMIUM, launch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def train_server(lab: Lab, train_dir: Path, tmp_path: Path, cache_dir: Path) -> Iterator[str]:
    settings = Settings(
        model="tiny", cache_dir=cache_dir, data_dir=tmp_path / "data", allowed_paths=[train_dir]
    )
    with serve_in_thread(create_app(Lab(settings, backend=lab.backend))) as url:
        yield url


def test_train_tab_runs_a_job_to_the_end(train_server: str, train_dir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    records = [json.loads(x) for x in (train_dir / "train.jsonl").read_text().splitlines()]
    for r in records:  # an upload has no folder of its own: images by absolute, allowed paths
        r["images"] = [str(train_dir / p) for p in r["images"]]
    upload = tmp_path / "records.jsonl"
    upload.write_text("".join(json.dumps(r) + "\n" for r in records))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    en, zh = TEXT["en"], TEXT["zh"]
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{train_server}/")
        page.get_by_role("tab", name=en["tab_train"]).click()
        page.wait_for_selector("#train-start")
        page.set_input_files("#train-data input[type=file]", str(upload))
        page.wait_for_function("document.querySelector('#train-data').innerText.includes('records.jsonl')")
        for field, value in (("max-steps", "2"), ("batch-size", "2"), ("grad-accum", "1"),
                             ("logging-steps", "1"), ("lora-rank", "4")):  # fmt: skip
            box = page.locator(f"#train-{field} input[type=number]")
            box.fill(value)
            box.press("Tab")
        page.click("#train-start")
        page.wait_for_function(
            "t => document.querySelector('#train-status').innerText.includes(t)",
            arg=en["train_finished"],
            timeout=240_000,
        )
        page.wait_for_selector("#train-curves img", timeout=30_000)
        status = page.inner_text("#train-status")
        assert "step 2 of 2" in status, status
        assert page.locator("#train-log textarea").input_value().strip()
        strokes = page.eval_on_selector_all(
            "#train-plot svg path", "els => els.map(e => e.getAttribute('stroke'))"
        )
        assert CURVE_COLORS["loss"] in strokes  # the live plot drew the training loss
        vqa = tmp_path / "vqa.jsonl"
        vqa.write_text(
            json.dumps({"image": str(train_dir / "cxr.dcm"), "question": "Pneumothorax?", "answer": "no"})
            + "\n"
            + json.dumps(
                {"image": str(train_dir / "ct.dcm"), "question": "Which organ?", "answer": "abdomen"}
            )
            + "\n"
        )
        page.set_input_files("#train-vqa input[type=file]", str(vqa))
        page.wait_for_function("document.querySelector('#train-vqa').innerText.includes('vqa.jsonl')")
        page.click("#train-eval")
        page.wait_for_function(
            "document.querySelector('#train-eval-table').innerText.includes('1 / 1')", timeout=120_000
        )
        table = page.inner_text("#train-eval-table")
        assert "base" in table and "adapter" in table, table
        page.click("#train-load")
        page.wait_for_function("document.querySelector('#train-loaded').innerText.includes('adapter')")
        page.screenshot(path=str(ARTIFACTS / "train.png"), full_page=True)

        page.locator("#lang label", has_text="中文").click()
        page.wait_for_function(
            "t => document.querySelector('#train-start').innerText.includes(t)", arg=zh["train_start"]
        )
        page.wait_for_function(
            "t => document.querySelector('#train-status').innerText.includes(t)", arg=zh["train_finished"]
        )
        assert "第 2 步，共 2 步" in page.inner_text("#train-status")
        assert zh["train_loss"] in page.inner_text("#train-plot")
        assert zh["train_loaded"][:6] in page.inner_text("#train-loaded")
        body = page.inner_text("body")
        for key in ("tab_train", "tab_lab", "train_stop", "train_feedback", "train_f_max_steps", "train_log"):
            assert zh[key] in body, key
        page.screenshot(path=str(ARTIFACTS / "train-zh.png"), full_page=True)
        page.click("#kb-button")  # the knowledge-base tab lists its snippets when opened
        page.wait_for_function(
            "t => document.querySelector('#kb-page-info').innerText.includes(t)", arg=zh["kb_page_info"][:1]
        )
        browser.close()


def test_train_tab_only_for_key_holders(lab: Lab, cache_dir: Path, tmp_path: Path) -> None:
    """With API keys: behind the server's login (password = a key) the tab shows; on a page served
    without that login it never does."""
    from playwright.sync_api import sync_playwright

    from medvlab.ui.app import build_ui

    keyed = Lab(Settings(model="tiny", cache_dir=cache_dir, api_keys=["train-key-123"]), backend=lab.backend)
    demo = build_ui(keyed)
    _, bare_url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        with serve_in_thread(create_app(keyed)) as url, sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page()
            page.goto(bare_url)
            page.wait_for_selector("#files")
            page.wait_for_timeout(2000)  # the page's load event has run
            assert TEXT["en"]["tab_train"] not in page.get_by_role("tab").all_inner_texts()
            page.goto(f"{url}/")
            page.fill("input[type=password]", "train-key-123")
            page.fill("input[type=text]", "teacher")
            page.keyboard.press("Enter")
            page.get_by_role("tab", name=TEXT["en"]["tab_train"]).click()
            page.wait_for_selector("#train-start")
            browser.close()
    finally:
        demo.close()
