"""The knowledge base of prior reports (a closed accordion): search it, add report files to it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from medvlab.errors import MedvlabError
from medvlab.services import Lab
from medvlab.ui.i18n import Texts
from medvlab.ui.state import shown_errors
from medvlab.ui.uploads import checked_paths, forget


@dataclass(frozen=True)
class Knowledge:
    accordion: gr.Accordion
    query: gr.Textbox
    search: gr.Button
    results: gr.Markdown
    files: gr.File
    status: gr.Markdown


def build(texts: Texts) -> Knowledge:
    with texts.add(gr.Accordion, {"label": "kb"}, open=False) as accordion:
        with gr.Row():
            query = texts.add(gr.Textbox, {"label": "kb_query"}, scale=4, elem_id="kb-query")
            search = texts.add(gr.Button, {"value": "kb_search"}, scale=1, elem_id="kb-search")
        results = gr.Markdown(elem_id="kb-results")
        files = texts.add(
            gr.File, {"label": "kb_files"}, file_count="multiple", type="filepath", elem_id="kb-files"
        )
        status = gr.Markdown()
    return Knowledge(accordion, query, search, results, files, status)


def search(lab: Lab, query: str) -> str:
    """The top 5 passages for ``query``, each with its citation and how it was found."""
    with shown_errors():
        hits = lab.kb_search(query, 5)
    if not hits:
        return "—"
    return "\n\n".join(f"**{h.citation()}** `{'+'.join(h.via)}`\n\n{h.snippet.text[:400]}" for h in hits)


def add(lab: Lab, files: Any) -> str:
    """Adds uploaded report files (deleted once read); -> "+added → total"."""
    with shown_errors():
        paths = checked_paths(files, lab.settings)
    if not paths:
        return ""
    try:
        n = lab.kb_add(paths)
    except MedvlabError as exc:
        raise gr.Error(str(exc)) from exc
    finally:
        forget(paths)
    return f"+{n} → {lab.kb_count()}"


def wire(lab: Lab, kb: Knowledge) -> None:
    kb.search.click(partial(search, lab), kb.query, kb.results, api_name="kb_search")
    kb.query.submit(partial(search, lab), kb.query, kb.results, api_visibility="private")
    kb.files.upload(partial(add, lab), kb.files, kb.status, api_visibility="private")
