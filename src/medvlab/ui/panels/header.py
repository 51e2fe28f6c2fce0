"""The header: title, the model status line and the language switch; and the disclaimer footer."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gradio as gr

from medvlab.config import TINY_MODEL
from medvlab.services import Lab
from medvlab.ui.i18n import LANGS, TEXT, Texts, language_of
from medvlab.vlm.prompting import DISCLAIMERS


def model_status(lab: Lab, language: str = "en") -> str:
    """One line saying which model answers, and why none does if it failed to load."""
    t = TEXT[language]
    if lab.load_error is not None:
        return f"**{t['model']}:** `{lab.model_id}` — **{t['no_model']}**: {lab.load_error}"
    note = f" ({t['tiny']})" if lab.model_id == TINY_MODEL else ""
    return f"**{t['model']}:** `{lab.model_id}`{note}"


def disclaimer(language: str) -> str:
    return f"<small>{DISCLAIMERS[language]}</small>"


@dataclass(frozen=True)
class Header:
    title: gr.Markdown
    status: gr.Markdown
    lang: gr.Radio


def build(lab: Lab, texts: Texts) -> Header:
    """Title and status in a column of the current row, then the language radio beside it."""
    with gr.Column(scale=3):
        title = texts.add(gr.Markdown, {"value": "title"})
        status = texts.computed(
            gr.Markdown(model_status(lab, texts.language), elem_id="model-status"), partial(model_status, lab)
        )
    lang = gr.Radio(list(LANGS), value="English", label=TEXT[texts.language]["language"], elem_id="lang")
    return Header(title, status, lang)


def build_footer(texts: Texts) -> gr.Markdown:
    return texts.computed(gr.Markdown(disclaimer(texts.language)), disclaimer)


def status_in(lab: Lab, lang_label: str) -> str:
    return model_status(lab, language_of(lang_label))


def wire(lab: Lab, demo: gr.Blocks, header: Header) -> None:
    """The status line is computed again on each page load (the model may have finished loading)."""
    demo.load(partial(status_in, lab), header.lang, header.status, api_visibility="private")
