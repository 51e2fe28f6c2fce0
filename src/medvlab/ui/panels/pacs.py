"""The PACS tab: search a configured PACS, pick a series, open it in the viewer, and
send results back into its study (DICOM SEG + SR, or the PDF report + SR); import prior reports into the
knowledge base. Every action calls :mod:`medvlab.services.pacs`.

A series opens in the viewer the way an upload does: its files are handed to the viewer's file input,
whose own handler reads them (within the lab's limits) and deletes them from disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from medvlab import scratch
from medvlab.errors import MedvlabError
from medvlab.pacs import Filters
from medvlab.services import Lab
from medvlab.services import pacs as pacs_service
from medvlab.ui.i18n import TEXT, Texts, language_of
from medvlab.ui.panels.viewer import Viewer
from medvlab.ui.state import States, shown_errors

STUDY_COLUMNS = (
    "pacs_study_uid",
    "pacs_patient",
    "pacs_date_col",
    "pacs_accession",
    "pacs_modalities",
    "pacs_description",
)
SERIES_COLUMNS = ("pacs_series_uid", "pacs_modality", "pacs_number", "pacs_instances", "pacs_description")


LAB_TAB = "lab"
"""The id of the page's Lab tab (viewer and chat)."""


@dataclass(frozen=True)
class PacsPanel:
    tab: gr.Tab
    name: gr.Dropdown
    patient: gr.Textbox
    accession: gr.Textbox
    date: gr.Textbox
    modality: gr.Textbox
    search: gr.Button
    studies: gr.Dataframe
    study: gr.Textbox
    series_table: gr.Dataframe
    series: gr.Textbox
    open: gr.Button
    question: gr.Textbox
    segment: gr.Button
    report: gr.Button
    import_kb: gr.Button
    status: gr.Markdown


def build(lab: Lab, texts: Texts) -> PacsPanel:
    try:
        names = [row["name"] for row in pacs_service.listing(lab.settings)]
    except MedvlabError:  # a bad MEDVLAB_PACS is reported when the panel is used, not at start-up
        names = []
    with texts.add(gr.Tab, {"label": "pacs"}, elem_id="pacs") as tab:
        with gr.Row():
            name = texts.add(
                gr.Dropdown,
                {"label": "pacs_name"},
                choices=names,
                value=names[0] if names else None,
                allow_custom_value=True,
                elem_id="pacs-name",
                scale=1,
            )
            patient = texts.add(gr.Textbox, {"label": "pacs_patient"}, elem_id="pacs-patient", scale=1)
            accession = texts.add(gr.Textbox, {"label": "pacs_accession"}, elem_id="pacs-accession", scale=1)
            date = texts.add(
                gr.Textbox,
                {"label": "pacs_date", "placeholder": "pacs_date_hint"},
                elem_id="pacs-date",
                scale=1,
            )
            modality = texts.add(gr.Textbox, {"label": "pacs_modality"}, elem_id="pacs-modality", scale=1)
            search = texts.add(gr.Button, {"value": "pacs_search"}, elem_id="pacs-search", scale=1)
        studies = texts.add(
            gr.Dataframe,
            {"label": "pacs_studies", "headers": STUDY_COLUMNS},
            interactive=False,
            elem_id="pacs-studies",
            wrap=True,
        )
        study = texts.add(gr.Textbox, {"label": "pacs_study"}, elem_id="pacs-study")
        series_table = texts.add(
            gr.Dataframe,
            {"label": "pacs_series", "headers": SERIES_COLUMNS},
            interactive=False,
            elem_id="pacs-series-table",
            wrap=True,
        )
        series = texts.add(gr.Textbox, {"label": "pacs_series_pick"}, elem_id="pacs-series")
        with gr.Row():
            open_ = texts.add(gr.Button, {"value": "pacs_open"}, elem_id="pacs-open")
            segment = texts.add(gr.Button, {"value": "pacs_segment"}, elem_id="pacs-segment")
            report = texts.add(gr.Button, {"value": "pacs_report"}, elem_id="pacs-report")
            import_kb = texts.add(gr.Button, {"value": "pacs_import"}, elem_id="pacs-import")
        question = texts.add(gr.Textbox, {"label": "pacs_question"}, elem_id="pacs-question")
        status = gr.Markdown(elem_id="pacs-status")
    return PacsPanel(
        tab,
        name,
        patient,
        accession,
        date,
        modality,
        search,
        studies,
        study,
        series_table,
        series,
        open_,
        question,
        segment,
        report,
        import_kb,
        status,
    )


def _blank(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def search(
    lab: Lab, name: str | None, patient: str, accession: str, date: str, modality: str
) -> list[list[Any]]:
    """Studies matching the form, one row each."""
    with shown_errors():
        filters = Filters(
            patient_id=_blank(patient),
            accession=_blank(accession),
            date=_blank(date),
            modality=_blank(modality),
        )
        rows = pacs_service.search_studies(lab.settings, _blank(name), filters)
    return [
        [s.study_uid, s.patient_id, s.date, s.accession, "/".join(s.modalities), s.description] for s in rows
    ]


def pick_study(
    lab: Lab, name: str | None, table: Any, evt: gr.SelectData
) -> tuple[str, list[list[Any]], str]:
    """A click on a study row -> its UID, its series, and the largest image series picked."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    study_uid = str(table.iloc[row, 0]) if hasattr(table, "iloc") else str(table[row][0])
    with shown_errors():
        series = pacs_service.search_series(lab.settings, _blank(name), study_uid)
    rows = [[s.series_uid, s.modality, s.number, s.n_instances, s.description] for s in series]
    images = [s for s in series if s.is_image]
    best = max(images, key=lambda s: s.n_instances or 0).series_uid if images else ""
    return study_uid, rows, best


def pick_series(table: Any, evt: gr.SelectData) -> str:
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return str(table.iloc[row, 0]) if hasattr(table, "iloc") else str(table[row][0])


def _need_study(study: str, lang_label: str) -> str:
    if not study or not study.strip():
        raise gr.Error(TEXT[language_of(lang_label)]["pacs_no_study"])
    return study.strip()


def open_series(
    lab: Lab,
    name: str | None,
    study: str,
    series: str,
    lang_label: str,
    progress: gr.Progress = gr.Progress(),
) -> tuple[Any, str, None]:
    """Retrieve the series and hand its files to the viewer's file input (which loads and deletes them);
    the previous image's segmentation is dropped."""
    study_uid = _need_study(study, lang_label)

    def report(done: int, total: int) -> None:
        progress((done, total), desc="PACS")

    with shown_errors():
        info, files = pacs_service.get(lab, _blank(name), study_uid, _blank(series), progress=report)
    folder = scratch.keep_dir("pacs-open-")  # read and deleted by the viewer; reaped after the TTL otherwise
    paths = []
    for file_name, data in files:
        path = folder / file_name
        path.write_bytes(data)
        paths.append(str(path))
    t = TEXT[language_of(lang_label)]
    return paths, t["pacs_opened"].format(n=len(paths), series=info["series"]["series_uid"]), None


def _stored_text(stored: dict[str, Any] | None, t: dict[str, str]) -> str:
    if not stored:
        return ""
    kinds = ", ".join(i["kind"] for i in stored["instances"])
    return t["pacs_stored"].format(kinds=kinds, study=stored["study_uid"])


def segment(lab: Lab, name: str | None, study: str, series: str, lang_label: str) -> str:
    """Segment the series; store SEG + SR in its study; -> volumes and what was stored."""
    study_uid = _need_study(study, lang_label)
    t = TEXT[language_of(lang_label)]
    with shown_errors():
        result = pacs_service.segment(lab, _blank(name), study_uid, _blank(series))
    volumes = ", ".join(f"{k}: {v:.1f} mL" for k, v in result.volumes_ml.items())
    return f"{volumes}\n\n{_stored_text(result.stored.as_dict() if result.stored else None, t)}"


def report(lab: Lab, name: str | None, study: str, series: str, question: str, lang_label: str) -> str:
    """The PDF report of the series, stored as an Encapsulated PDF + SR in its study."""
    study_uid = _need_study(study, lang_label)
    language = language_of(lang_label)
    t = TEXT[language]
    if not question or not question.strip():
        raise gr.Error(t["pacs_no_question"])
    with shown_errors():
        result = pacs_service.report(lab, _blank(name), study_uid, question, _blank(series))
    return f"{result.answer}\n\n{_stored_text(result.stored.as_dict() if result.stored else None, t)}"


def import_reports(lab: Lab, name: str | None, patient: str, date: str, lang_label: str) -> str:
    t = TEXT[language_of(lang_label)]
    with shown_errors():
        result = pacs_service.import_reports(lab, _blank(name), _blank(patient), _blank(date))
    return t["pacs_imported"].format(n=result["reports"], total=result["total"])


def wire(
    lab: Lab, panel: PacsPanel, viewer: Viewer, lang: gr.Radio, states: States, tabs: gr.Tabs | None = None
) -> None:
    private: dict[str, Any] = {"api_visibility": "private"}
    form = [panel.name, panel.patient, panel.accession, panel.date, panel.modality]
    panel.search.click(partial(search, lab), form, panel.studies, **private)

    def on_study(name: str | None, table: Any, evt: gr.SelectData) -> tuple[str, list[list[Any]], str]:
        return pick_study(lab, name, table, evt)  # a plain function: Gradio finds SelectData by signature

    panel.studies.select(
        on_study, [panel.name, panel.studies], [panel.study, panel.series_table, panel.series], **private
    )
    panel.series_table.select(pick_series, panel.series_table, panel.series, **private)
    target = [panel.name, panel.study, panel.series]
    # the viewer's own upload handler takes it from here
    opened = panel.open.click(
        partial(open_series, lab), [*target, lang], [viewer.files, panel.status, states.seg], **private
    )
    if tabs is not None:  # show the viewer (the Lab tab) the series opens in
        opened.success(lambda: gr.Tabs(selected=LAB_TAB), None, tabs, **private)
    panel.segment.click(partial(segment, lab), [*target, lang], panel.status, **private)
    panel.report.click(partial(report, lab), [*target, panel.question, lang], panel.status, **private)
    panel.import_kb.click(
        partial(import_reports, lab), [panel.name, panel.patient, panel.date, lang], panel.status, **private
    )
