"""The web UI (Gradio Blocks): upload, slice viewer with windows, streaming chat, Chinese/English labels.

This module only lays the page out — header, tabs (Lab: viewer and chat in two columns; Knowledge base;
PACS; Train), the footer — and calls each
panel's ``build`` and ``wire`` (:mod:`medvlab.ui.panels`). Every action calls :class:`medvlab.services.Lab`
from a handler in its panel's module; texts and the language switch live in :mod:`medvlab.ui.i18n`.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from dataclasses import dataclass

import gradio as gr

from medvlab.services import Lab
from medvlab.ui import api
from medvlab.ui.i18n import LANGS, TEXT, Texts
from medvlab.ui.panels import chat, feedback, header, knowledge, options, segmentation, viewer
from medvlab.ui.panels import pacs as pacs_panel
from medvlab.ui.panels import train as train_panel
from medvlab.ui.panels.feedback import RATINGS
from medvlab.ui.panels.header import model_status
from medvlab.ui.panels.viewer import display
from medvlab.ui.state import ChatSession, States, build_states

__all__ = [
    "HEAD",
    "LANGS",
    "RATINGS",
    "TEXT",
    "THEME",
    "ChatSession",
    "Page",
    "build_page",
    "build_ui",
    "display",
    "model_status",
]

HEAD = viewer.HEAD
"""Script and style the page needs (the viewer's wheel and arrow keys), bundled; the server passes it on."""

# System fonts only: the default theme would make the browser fetch Google Fonts.
THEME = gr.themes.Soft(
    font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
)


@dataclass(frozen=True)
class Page:
    """The built page and its parts (tests reach components through these)."""

    demo: gr.Blocks
    texts: Texts
    header: header.Header
    viewer: viewer.Viewer
    segmentation: segmentation.SegmentationPanel
    chat: chat.Chat
    feedback: feedback.Feedback
    options: options.Options
    knowledge: knowledge.Knowledge
    states: States
    pacs: pacs_panel.PacsPanel | None = None
    train: train_panel.TrainPanel | None = None


def build_page(lab: Lab) -> Page:
    texts = Texts("en")
    with gr.Blocks(title="medvlab", analytics_enabled=False) as demo:
        with gr.Row():
            top = header.build(lab, texts)
        with gr.Tabs(elem_id="tabs") as tabs:
            with texts.add(gr.Tab, {"label": "tab_lab"}, id=pacs_panel.LAB_TAB, elem_id="lab"), gr.Row():
                with gr.Column(scale=1):
                    view = viewer.build(texts)
                    seg = segmentation.build(texts)
                with gr.Column(scale=1):
                    talk = chat.build(texts)
                    rate = feedback.build(texts)
                    opts = options.build(lab.settings, texts)
            kb = knowledge.build(texts)  # each of these is a tab
            remote = pacs_panel.build(lab, texts)
            trainer = train_panel.build(lab, texts)
        header.build_footer(texts)
        states = build_states()

        viewer.wire(lab, view, states, top.lang)
        segmentation.wire(lab, seg, view, top.lang, states)
        chat.wire(lab, talk, view, seg, opts, top.lang, states)
        feedback.wire(lab, rate, view, opts, top.lang, states)
        knowledge.wire(lab, kb, top.lang)
        pacs_panel.wire(lab, remote, view, top.lang, states, tabs)
        train_panel.wire(lab, trainer, top.lang, demo)
        texts.wire(top.lang)
        api.wire(lab)
        header.wire(lab, demo, top)
    return Page(demo, texts, top, view, seg, talk, rate, opts, kb, states, pacs=remote, train=trainer)


def build_ui(lab: Lab) -> gr.Blocks:
    """The Blocks app; the server mounts it at ``/``."""
    return build_page(lab).demo
