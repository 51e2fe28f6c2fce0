"""Texts and the language switch, without a browser: one keyed table, one relabel handler for every panel."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from medvlab.config import Settings
from medvlab.services import Lab
from medvlab.ui.app import Page, build_page, model_status
from medvlab.ui.i18n import LANGS, TEXT, Texts, language_of, translate
from medvlab.vlm.prompting import DISCLAIMERS

ELEM_IDS = {  # what the browser tests and users' scripts select by
    "model-status", "lang", "files", "image-info", "preview", "slice", "window", "segment", "volumes",
    "use-volumes", "seg-files", "chat", "question", "structured", "use-kb", "send", "clear", "table",
    "explain", "export", "span", "heatmaps", "report", "rating", "better", "send-feedback",
    "feedback-status", "kb-query", "kb-search", "kb-results", "kb-files",
}  # fmt: skip


def shown(update: dict[str, object]) -> dict[str, object]:
    """An update's text properties, with a table's headers taken out of its value."""
    out = dict(update)
    value = out.get("value")
    if isinstance(value, dict) and "headers" in value:
        out["headers"] = value["headers"]
        del out["value"]
    return out


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Page:
    """The page of a lab whose model is never loaded (building the page does not load it)."""
    lab = Lab(Settings(model="tiny", cache_dir=tmp_path_factory.mktemp("i18n-cache")))
    return build_page(lab)


def test_every_key_exists_in_both_languages() -> None:
    assert set(LANGS.values()) == set(TEXT)
    assert set(TEXT["en"]) == set(TEXT["zh"])
    assert all(text.strip() for t in TEXT.values() for text in t.values())


def test_language_of_a_radio_choice() -> None:
    assert language_of("中文") == "zh" and language_of("English") == "en"
    assert language_of(None) == "en" and language_of("Klingon") == "en"


def test_an_unknown_key_is_refused_when_the_component_is_made() -> None:
    with pytest.raises(KeyError):
        Texts().add(gr.Button, {"value": "no-such-key"})


def test_switching_to_chinese_updates_every_registered_component(page: Page) -> None:
    updates = page.texts.relabel("中文")
    assert set(updates) == set(page.texts.blocks)
    assert len(updates) >= 32  # at least as many as the page relabelled before panels had their own modules
    for block, props in page.texts.keyed.items():
        skip = {"__type__", "value"} if block in page.texts.dynamic else {"__type__"}  # value: computed
        assert {k: v for k, v in shown(updates[block]).items() if k not in skip} == translate(props, "zh")
    zh = TEXT["zh"]
    assert updates[page.viewer.files]["label"] == zh["files"]
    assert updates[page.chat.question]["placeholder"] == zh["placeholder"]
    # Gradio 6 ignores new headers alone: they go with the table's rows
    assert updates[page.segmentation.volumes]["value"] == {
        "headers": [zh["structure"], zh["volume_ml"]],
        "data": [],
    }
    kept = page.texts.relabel(
        "中文", *[[["brain", "1.0"]] if t is page.segmentation.volumes else None for t in page.texts.tables]
    )
    assert kept[page.segmentation.volumes]["value"]["data"] == [["brain", "1.0"]]
    assert updates[page.knowledge.tab]["label"] == zh["kb"]
    assert "模型" in updates[page.header.status]["value"]
    assert any(DISCLAIMERS["zh"] in str(u.get("value")) for u in updates.values())


def test_switching_back_to_english_restores_the_texts_the_page_was_built_with(page: Page) -> None:
    updates = page.texts.relabel("English")
    for block, props in page.texts.keyed.items():
        for prop, value in translate(props, "en").items():
            assert shown(updates[block])[prop] == value
            assert getattr(block, prop) == value


def test_the_language_radio_relabels_exactly_the_registered_components(page: Page) -> None:
    config = page.demo.get_config_file()
    lang_id = page.header.lang._id
    deps = [d for d in config["dependencies"] if [lang_id, "change"] in [list(t) for t in d["targets"]]]
    assert {b._id for b in page.texts.blocks} in [set(d["outputs"]) for d in deps]


def test_elem_ids_and_public_endpoints_are_kept(page: Page) -> None:
    config = page.demo.get_config_file()
    ids = {c["props"].get("elem_id") for c in config["components"]}
    assert ids >= ELEM_IDS
    public = {d["api_name"] for d in config["dependencies"] if d["api_visibility"] == "public"}
    assert public == {"load", "ask", "kb_search"}


def test_model_status_names_the_model_in_either_language(tmp_path: Path) -> None:
    lab = Lab(Settings(model="tiny", cache_dir=tmp_path))
    assert "random weights" in model_status(lab) and "随机权重" in model_status(lab, "zh")
