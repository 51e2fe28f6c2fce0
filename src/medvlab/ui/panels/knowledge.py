"""The knowledge base of prior reports: search it, add report files, browse the stored snippets page by
page, remove one, clear it (after a confirmation tick). Every action goes through the lab's knowledge
service (``Lab.kb_*``), as the CLI's ``medvlab kb`` and the REST ``/v1/kb`` routes do."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from medvlab.errors import MedvlabError
from medvlab.services import Lab
from medvlab.ui.i18n import Texts, texts_of
from medvlab.ui.state import shown_errors
from medvlab.ui.uploads import checked_paths, forget

PER_PAGE = 10
COLUMNS = ["kb_col_id", "kb_col_title", "kb_col_source", "kb_col_language", "kb_col_text"]


@dataclass(frozen=True)
class Knowledge:
    tab: gr.Tab
    query: gr.Textbox
    search: gr.Button
    results: gr.Markdown
    files: gr.File
    status: gr.Markdown
    table: gr.Dataframe
    filter: gr.Textbox
    page: gr.Number
    prev: gr.Button
    next: gr.Button
    page_info: gr.Markdown
    remove_id: gr.Number
    remove: gr.Button
    confirm: gr.Checkbox
    clear: gr.Button


def build(texts: Texts) -> Knowledge:
    with texts.add(gr.Tab, {"label": "kb"}, elem_id="kb") as tab:
        with gr.Row():
            query = texts.add(gr.Textbox, {"label": "kb_query"}, scale=4, elem_id="kb-query")
            search = texts.add(gr.Button, {"value": "kb_search"}, scale=1, elem_id="kb-search")
        results = gr.Markdown(elem_id="kb-results")
        files = texts.add(
            gr.File, {"label": "kb_files"}, file_count="multiple", type="filepath", elem_id="kb-files"
        )
        status = gr.Markdown(elem_id="kb-status")
        table = texts.add(
            gr.Dataframe,
            {"label": "kb_list", "headers": COLUMNS},
            interactive=False,
            wrap=True,
            elem_id="kb-table",
        )
        with gr.Row():
            filter_ = texts.add(gr.Textbox, {"label": "kb_filter"}, scale=3, elem_id="kb-filter")
            page = texts.add(
                gr.Number, {"label": "kb_page"}, value=1, minimum=1, precision=0, scale=1, elem_id="kb-page"
            )
            prev = texts.add(gr.Button, {"value": "kb_prev"}, scale=1, elem_id="kb-prev")
            next_ = texts.add(gr.Button, {"value": "kb_next"}, scale=1, elem_id="kb-next")
        page_info = gr.Markdown(elem_id="kb-page-info")
        with gr.Row():
            remove_id = texts.add(gr.Number, {"label": "kb_remove_id"}, precision=0, elem_id="kb-remove-id")
            remove = texts.add(gr.Button, {"value": "kb_remove"}, variant="secondary", elem_id="kb-remove")
            confirm = texts.add(gr.Checkbox, {"label": "kb_confirm_clear"}, value=False, elem_id="kb-confirm")
            clear = texts.add(gr.Button, {"value": "kb_clear"}, variant="stop", elem_id="kb-clear")
    return Knowledge(
        tab, query, search, results, files, status, table, filter_, page, prev, next_, page_info,
        remove_id, remove, confirm, clear,
    )  # fmt: skip


def search(lab: Lab, query: str) -> str:
    """The top 5 passages for ``query``, each with its citation and how it was found."""
    with shown_errors():
        hits = lab.kb_search(query, 5)
    if not hits:
        return "—"
    return "\n\n".join(
        f"**{h.citation()}** `{'+'.join(h.via)}` · #{h.snippet.id}\n\n{h.snippet.text[:400]}" for h in hits
    )


def listing(lab: Lab, page: float | None, contains: str, lang_label: str) -> tuple[Any, ...]:
    """-> (table rows, page number shown, 'page p of n · total'); a page past the end shows the last."""
    t = texts_of(lang_label)
    number = max(1, int(page or 1))
    with shown_errors():
        out = lab.kb_list(number, PER_PAGE, contains or "")
        if number > out["pages"]:
            number = out["pages"]
            out = lab.kb_list(number, PER_PAGE, contains or "")
    rows = [
        [s["id"], s["title"], s["source"], s["language"], " ".join(s["text"].split())[:160]]
        for s in out["snippets"]
    ]
    info = t["kb_page_info"].format(page=out["page"], pages=out["pages"], total=out["total"])
    return rows, number, info


def turn(lab: Lab, step: int, page: float | None, contains: str, lang_label: str) -> tuple[Any, ...]:
    return listing(lab, max(1, int(page or 1) + step), contains, lang_label)


def add(lab: Lab, files: Any, lang_label: str) -> str:
    """Adds uploaded report files (deleted once read); says how many were new and how many known."""
    with shown_errors():
        paths = checked_paths(files, lab.settings)
    if not paths:
        return ""
    try:
        done = lab.kb_add_checked(paths)
    except MedvlabError as exc:
        raise gr.Error(str(exc)) from exc
    finally:
        forget(paths)
    return texts_of(lang_label)["kb_added"].format(added=done.added, dup=done.duplicates, total=done.total)


def remove(lab: Lab, snippet_id: float | None, lang_label: str) -> str:
    t = texts_of(lang_label)
    if snippet_id is None:
        raise gr.Error(t["kb_remove_id"])
    with shown_errors():
        gone = lab.kb_remove(int(snippet_id))
    return t["kb_removed"].format(id=gone["id"], title=gone["title"])


def clear(lab: Lab, confirmed: bool, lang_label: str) -> tuple[str, bool]:
    """Clears only with the confirmation ticked (and unticks it again)."""
    t = texts_of(lang_label)
    if not confirmed:
        raise gr.Error(t["kb_need_confirm"])
    with shown_errors():
        n = lab.kb_clear()
    return t["kb_cleared"].format(n=n), False


def wire(lab: Lab, kb: Knowledge, lang: gr.Radio | None = None) -> None:
    private: dict[str, Any] = {"api_visibility": "private"}
    language: list[Any] = [lang] if lang is not None else [gr.State("English")]
    kb.search.click(partial(search, lab), kb.query, kb.results, api_name="kb_search")
    kb.query.submit(partial(search, lab), kb.query, kb.results, **private)
    page_inputs = [kb.page, kb.filter, *language]
    page_outputs = [kb.table, kb.page, kb.page_info]
    show = partial(listing, lab)
    kb.tab.select(show, page_inputs, page_outputs, **private)
    kb.page.submit(show, page_inputs, page_outputs, **private)
    kb.filter.submit(lambda c, lg: listing(lab, 1, c, lg), [kb.filter, *language], page_outputs, **private)
    kb.prev.click(partial(turn, lab, -1), page_inputs, page_outputs, **private)
    kb.next.click(partial(turn, lab, 1), page_inputs, page_outputs, **private)
    kb.files.upload(partial(add, lab), [kb.files, *language], kb.status, **private).success(
        show, page_inputs, page_outputs, **private
    )
    kb.remove.click(partial(remove, lab), [kb.remove_id, *language], kb.status, **private).success(
        show, page_inputs, page_outputs, **private
    )
    kb.clear.click(partial(clear, lab), [kb.confirm, *language], [kb.status, kb.confirm], **private).success(
        show, page_inputs, page_outputs, **private
    )
