"""The chat: answers streaming in, the question, structured / knowledge-base switches, the structured
findings table, attention maps of the last answer and the PDF report."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import gradio as gr

from medvlab import scratch
from medvlab.imaging.types import MedImage
from medvlab.seg.infer import Segmentation
from medvlab.services import Lab
from medvlab.ui.i18n import TEXT, Texts, language_of
from medvlab.ui.panels.options import Options
from medvlab.ui.panels.segmentation import SegmentationPanel
from medvlab.ui.panels.viewer import Viewer, render, render_inputs, slice_of
from medvlab.ui.state import ChatSession, States, shown_errors
from medvlab.vlm.prompting import Turn, strip_disclaimer


@dataclass(frozen=True)
class Chat:
    chatbot: gr.Chatbot
    question: gr.Textbox
    structured_on: gr.Checkbox
    kb_on: gr.Checkbox
    send: gr.Button
    clear: gr.Button
    table: gr.Dataframe
    explain: gr.Button
    export: gr.Button
    span: gr.Textbox
    heatmaps: gr.Gallery
    report: gr.File


def build(texts: Texts) -> Chat:
    chatbot = texts.add(gr.Chatbot, {"label": "chat"}, height=460, elem_id="chat")
    question = texts.add(
        gr.Textbox, {"label": "question", "placeholder": "placeholder"}, lines=2, elem_id="question"
    )
    with gr.Row():
        structured_on = texts.add(gr.Checkbox, {"label": "structured"}, value=False, elem_id="structured")
        kb_on = texts.add(gr.Checkbox, {"label": "use_kb"}, value=False, elem_id="use-kb")
    with gr.Row():
        send = texts.add(gr.Button, {"value": "send"}, variant="primary", elem_id="send")
        clear = texts.add(gr.Button, {"value": "clear"}, elem_id="clear")
    t = TEXT[texts.language]
    table = texts.add(  # headers and field names are relabelled by ``relabel`` (they go with the rows)
        gr.Dataframe,
        {"label": "table"},
        headers=[t["field"], t["value"]],
        interactive=False,
        wrap=True,
        elem_id="table",
    )
    with gr.Row():
        explain = texts.add(gr.Button, {"value": "explain"}, elem_id="explain")
        export = texts.add(gr.Button, {"value": "export"}, elem_id="export")
    span = texts.add(gr.Textbox, {"label": "span"}, lines=1, elem_id="span")
    # "contain": a chest X-ray is shown whole, not cropped to a square thumbnail
    heatmaps = texts.add(
        gr.Gallery, {"label": "heatmaps"}, columns=4, height=300, object_fit="contain", elem_id="heatmaps"
    )
    report = texts.add(gr.File, {"label": "report"}, elem_id="report")
    return Chat(
        chatbot, question, structured_on, kb_on, send, clear, table, explain, export, span, heatmaps, report
    )


def rows(data: dict[str, Any], language: str = "en") -> list[list[str]]:
    """A structured answer as (field, value) rows, field names in ``language``, without its disclaimer."""
    t = TEXT[language]
    return [[t.get(f"f_{k}", k), str(v)] for k, v in data.items() if k != "disclaimer"]


def text_of(content: Any) -> str:
    """Chat message content -> plain text (Gradio may hand back a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(text_of(c) for c in content)
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    return str(content or "")


def turns_of(history: list[dict[str, Any]], question: str, image: MedImage) -> list[Turn]:
    """The conversation so far plus the new question; the image belongs to the first question."""
    turns = [
        Turn("assistant" if m.get("role") == "assistant" else "user", text_of(m.get("content")))
        for m in history
    ]
    turns.append(Turn("user", question))
    turns[0].images = [image]
    return turns


def respond(
    lab: Lab,
    question: str,
    history: list[dict[str, Any]],
    image: MedImage | None,
    window: str,
    max_slices: float,
    max_new_tokens: float,
    lang_label: str,
    structured_on: bool,
    kb_on: bool,
    session: ChatSession | None,
    seg: Segmentation | None = None,
    volumes_on: bool = False,
) -> Iterator[tuple[Any, ...]]:
    """Streams (chat history, cleared question, findings table, session)."""
    language = language_of(lang_label)
    if image is None:
        raise gr.Error(TEXT[language]["no_image"])
    history = list(history or [])
    session = session or ChatSession()
    turns = turns_of(history, question, image)
    prompt = lab.prompt_options(None if window == "auto" else window, int(max_slices))
    generation = lab.generation_options(max_new_tokens=int(max_new_tokens))
    history += [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
    with shown_errors():
        volumes = seg.volumes_ml if (volumes_on and seg is not None) else None
        result = lab.answer(
            turns, prompt, generation, structured=structured_on, kb=3 if kb_on else 0, volumes_ml=volumes
        )
        if result.data is not None:
            data = result.data
            text = "```json\n" + json.dumps(data, ensure_ascii=False, indent=2) + "\n```"
            history[-1] = {"role": "assistant", "content": text}
            session = replace(
                session,
                structured=data,
                qa=[*session.qa, (question, json.dumps(data, ensure_ascii=False))],
            )
            yield history, "", table(data, language), session
            return
        answer = ""
        for piece in result.chunks or ():
            answer += piece
            history[-1] = {"role": "assistant", "content": answer}
            yield history, "", gr.update(), session
    session = replace(
        session, qa=[*session.qa, (question, answer)], hits=[*session.hits, *result.hits], heatmaps=[]
    )
    yield history, "", gr.update(), session


def caption(language: str, index: int, total: int, reached: bool = True) -> str:
    """ "attention · slice 91/181", with the volume's slice number as the viewer and the PDF show it."""
    t = TEXT[language]
    text = t["attention_label"].format(n=index + 1, total=total) if total > 1 else t["attention_2d"]
    return text if reached else text + t["attention_none"]


def relabel(lang_label: str, session: ChatSession | None) -> tuple[Any, Any]:
    """Field names of the findings table and captions of the attention maps in the new language."""
    language = language_of(lang_label)
    findings = table(session.structured if session is not None else None, language)
    if session is None:
        return findings, gr.update()
    captions = [
        (pic, caption(language, *s)) for (pic, _), s in zip(session.heatmaps, session.slices, strict=False)
    ]
    return findings, captions if session.heatmaps else gr.update()


def table(data: dict[str, Any] | None, language: str) -> dict[str, Any]:
    """The findings table's value: headers go with the rows (a bare list would bring back the headers the
    table was built with, in the page's first language)."""
    t = TEXT[language]
    return {"headers": [t["field"], t["value"]], "data": rows(data, language) if data else []}


def clear(lang_label: str = "English") -> tuple[Any, ...]:
    """-> (chat, session, heatmaps, table), all empty."""
    return [], None, [], table(None, language_of(lang_label))


def explain(
    lab: Lab,
    image: MedImage | None,
    window: str,
    max_slices: float,
    lang_label: str,
    span_text: str,
    session: ChatSession | None,
) -> tuple[list[tuple[Any, str]], ChatSession]:
    """Attention maps of the last answer (or of the part of it given in ``span_text``)."""
    language = language_of(lang_label)
    if image is None or session is None or not session.qa:
        raise gr.Error(TEXT[language]["no_answer"])
    question, answer = session.qa[-1]
    answer = strip_disclaimer(answer)
    span = None
    if span_text and span_text.strip():
        start = answer.find(span_text.strip())
        if start < 0:
            raise gr.Error(TEXT[language]["not_in_answer"])
        span = (start, start + len(span_text.strip()))
    prompt = lab.prompt_options(None if window == "auto" else window, int(max_slices))
    with shown_errors():
        maps = lab.attention_maps([Turn("user", question, [image])], answer, prompt, span)
    slices = [(m.slice_index, m.n_slices, m.reached) for m in maps]
    heatmaps = [(m.picture, caption(language, *s)) for m, s in zip(maps, slices, strict=True)]
    attention = {m.slice_index: m.grid for m in maps if m.reached}
    return heatmaps, replace(session, heatmaps=heatmaps, attention=attention, slices=slices)


def export(
    lab: Lab,
    image: MedImage | None,
    window: str,
    index: float,
    lang_label: str,
    session: ChatSession | None,
    seg: Segmentation | None = None,
) -> str:
    """The PDF report of the session, as a file deleted after ``MEDVLAB_UI_FILE_TTL_S``."""
    language = language_of(lang_label)
    if image is None or session is None or not session.qa:
        raise gr.Error(TEXT[language]["no_answer"])
    with shown_errors():
        pdf = lab.report(
            image,
            session.qa,
            window=None if window == "auto" else window,
            slice_index=slice_of(image, index) if image.n_slices > 1 else 0,
            structured=session.structured,
            heatmaps=session.heatmaps,
            citations=session.hits,
            segmentation=seg,
            language=language,
        )
    folder = scratch.keep_dir("ui-report-")
    path = folder / f"medvlab-report-{time.strftime('%Y%m%d-%H%M%S')}.pdf"
    path.write_bytes(pdf)
    return str(path)


def wire(
    lab: Lab,
    chat: Chat,
    viewer: Viewer,
    segmentation: SegmentationPanel,
    options: Options,
    lang: gr.Radio,
    states: States,
) -> None:
    inputs = [
        chat.question,
        chat.chatbot,
        states.image,
        viewer.window,
        options.max_slices,
        options.max_new_tokens,
        lang,
        chat.structured_on,
        chat.kb_on,
        states.session,
        states.seg,
        segmentation.volumes_on,
    ]
    outputs = [chat.chatbot, chat.question, chat.table, states.session]
    chat.send.click(partial(respond, lab), inputs, outputs, api_visibility="private")
    chat.question.submit(partial(respond, lab), inputs, outputs, api_visibility="private")
    # the viewer draws the attention of the last answer (or stops drawing it) once it changes
    view_inputs = render_inputs(viewer, states, lang)
    chat.clear.click(
        clear, lang, [chat.chatbot, states.session, chat.heatmaps, chat.table], api_visibility="private"
    ).then(partial(render, lab), view_inputs, viewer.preview, api_visibility="private")
    chat.explain.click(
        partial(explain, lab),
        [states.image, viewer.window, options.max_slices, lang, chat.span, states.session],
        [chat.heatmaps, states.session],
        api_visibility="private",
    ).then(partial(render, lab), view_inputs, viewer.preview, api_visibility="private")
    lang.change(relabel, [lang, states.session], [chat.table, chat.heatmaps], api_visibility="private")
    chat.export.click(
        partial(export, lab),
        [states.image, viewer.window, viewer.slice, lang, states.session, states.seg],
        chat.report,
        api_visibility="private",
    )
