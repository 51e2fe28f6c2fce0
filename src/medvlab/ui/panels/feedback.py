"""Feedback on the last answer: a rating, an optional better answer (training data), and the send button."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from medvlab.services import Lab
from medvlab.ui.i18n import TEXT, Texts, language_of, texts_of
from medvlab.ui.panels.options import Options
from medvlab.ui.panels.viewer import Viewer
from medvlab.ui.state import ChatSession, States, shown_errors
from medvlab.ui.uploads import Uploads

RATINGS = {"good": 1, "bad": -1}
"""Values of the rating radio; it shows them as words in the page's language (no emoji: fonts lack them)."""


def rating_choices(language: str) -> list[tuple[str, str]]:
    return [(TEXT[language][name], name) for name in RATINGS]


@dataclass(frozen=True)
class Feedback:
    rating: gr.Radio
    better: gr.Textbox
    send: gr.Button
    status: gr.Markdown


def build(texts: Texts) -> Feedback:
    with gr.Group():
        rating = texts.add(
            gr.Radio, {"label": "rating"}, choices=rating_choices(texts.language), elem_id="rating"
        )
        better = texts.add(gr.Textbox, {"label": "better"}, lines=2, elem_id="better")
        send = texts.add(gr.Button, {"value": "send_feedback"}, elem_id="send-feedback")
        status = gr.Markdown(elem_id="feedback-status")  # cleared when the language changes
    return Feedback(rating, better, send, status)


def send(
    lab: Lab,
    uploads: Uploads | None,
    rating: str | None,
    better: str,
    window: str,
    max_slices: float,
    lang_label: str,
    session: ChatSession | None,
) -> str:
    """Stores the rated last answer with the session's image files; -> the thank-you line."""
    t = texts_of(lang_label)
    if session is None or not session.qa or uploads is None:
        raise gr.Error(t["no_answer"])
    if rating not in RATINGS:
        raise gr.Error(t["pick_rating"])
    question, answer = session.qa[-1]
    with shown_errors():
        fid = lab.record_feedback_uploads(
            uploads.files,
            question,
            answer,
            RATINGS[rating],
            better or None,
            None if window == "auto" else window,
            int(max_slices),
        )
    return t["thanks"].format(id=fid)


def wire(
    lab: Lab, feedback: Feedback, viewer: Viewer, options: Options, lang: gr.Radio, states: States
) -> None:
    feedback.send.click(
        partial(send, lab),
        [
            states.uploads,
            feedback.rating,
            feedback.better,
            viewer.window,
            options.max_slices,
            lang,
            states.session,
        ],
        feedback.status,
        api_visibility="private",
    )
    lang.change(
        relabel, [lang, feedback.rating], [feedback.rating, feedback.status], api_visibility="private"
    )


def relabel(lang_label: str, rating: str | None) -> tuple[Any, str]:
    """The rating words in the new language (the choice kept); the last status line is in the old one."""
    return gr.update(choices=rating_choices(language_of(lang_label)), value=rating), ""
