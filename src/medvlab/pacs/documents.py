"""The text of prior reports kept in a PACS: DICOM SR documents (their content tree flattened to lines)
and Encapsulated PDFs (their text, read with pypdf), each with the study it belongs to, so the knowledge
base can cite it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medvlab.pacs.client import PacsClient
from medvlab.pacs.records import Filters, StudyRow

logger = logging.getLogger(__name__)

REPORT_MODALITIES = ("SR", "DOC")
"""Series modalities that hold reports: structured reports and encapsulated documents."""

SKIPPED_CONCEPTS = frozenset(
    {"Language of Content Item and Descendants", "Observer Type", "Device Observer UID"}
)
"""Bookkeeping items of an SR that say nothing a reader of the report needs (and only add noise to search)."""

MAX_PDF_PAGES = 50
"""Pages of one encapsulated PDF read at most (a report is a few pages; a 1,000-page file is not one)."""


@dataclass(frozen=True)
class PriorReport:
    """The text of one report document and where it came from."""

    title: str
    text: str
    source: str
    """``PACS <name> · study <uid> · <date> · accession <number>``: what a citation shows."""
    sop_instance_uid: str


def _meaning(item: Dataset) -> str:
    seq = item.get("ConceptNameCodeSequence")
    return str(seq[0].CodeMeaning) if seq else ""


def sr_lines(ds: Dataset, depth: int = 0) -> Iterator[str]:
    """The SR content tree as "Concept: value" lines, in document order.

    Hand-written: highdicom parses the templates it knows (TID 1500) into objects, but offers no generic
    "all the text of any SR" walk, and prior reports come from every vendor's template.
    """
    for item in ds.get("ContentSequence", []):
        kind, name = item.get("ValueType", ""), _meaning(item)
        if name in SKIPPED_CONCEPTS:
            continue
        value = ""
        if kind == "TEXT":
            value = str(item.get("TextValue", ""))
        elif kind == "CODE" and item.get("ConceptCodeSequence"):
            value = str(item.ConceptCodeSequence[0].CodeMeaning)
        elif kind == "NUM" and item.get("MeasuredValueSequence"):
            measured = item.MeasuredValueSequence[0]
            units = measured.get("MeasurementUnitsCodeSequence")
            value = f"{measured.NumericValue} {units[0].CodeValue if units else ''}".strip()
        elif kind in ("DATE", "TIME", "DATETIME", "PNAME"):  # UIDs are left out: no text to search
            keyword = {"DATE": "Date", "TIME": "Time", "DATETIME": "DateTime", "PNAME": "PersonName"}
            value = str(item.get(keyword[kind], ""))
        elif kind == "CONTAINER" and name and depth > 0:
            yield f"{name}:"
        if value:
            yield f"{name}: {value}" if name else value
        yield from sr_lines(item, depth + 1)


def pdf_text(data: bytes) -> str:
    """The text of a PDF (pypdf); empty when it has none (a scanned page) or cannot be read."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages[:MAX_PDF_PAGES]]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        logger.warning("an encapsulated PDF could not be read: %s", exc)
        return ""
    return "\n\n".join(p.strip() for p in pages if p.strip())


def document_text(ds: Dataset) -> str:
    """The text of an SR or an Encapsulated PDF dataset ("" for anything else)."""
    if "ContentSequence" in ds and str(ds.get("Modality", "SR")) == "SR":
        title = _meaning(ds)
        lines = list(sr_lines(ds))
        return "\n".join([title, *lines] if title else lines).strip()
    if str(ds.get("MIMETypeOfEncapsulatedDocument", "")).lower() == "application/pdf":
        data = bytes(ds.EncapsulatedDocument)
        length = int(ds.get("EncapsulatedDocumentLength") or len(data))
        return pdf_text(data[:length])
    return ""


def citation(pacs: str, study: StudyRow) -> str:
    parts = [f"PACS {pacs}", f"study {study.study_uid}"]
    if study.date:
        parts.append(study.date)
    if study.accession:
        parts.append(f"accession {study.accession}")
    return " · ".join(parts)


def prior_reports(client: PacsClient, filters: Filters, limit: int = 200) -> list[PriorReport]:
    """Every SR / encapsulated-PDF report with text in the studies ``filters`` finds (at most ``limit``
    studies), each citing its study."""
    reports = []
    for study in client.search_studies(filters, limit=limit):
        for series in client.search_series(study.study_uid):
            if series.modality.upper() not in REPORT_MODALITIES:
                continue
            try:
                documents = client.retrieve_study_objects(study.study_uid, series)
            except InvalidDicomError as exc:  # one unreadable document must not stop the import
                logger.warning("skipping series %s of study %s: %s", series.series_uid, study.study_uid, exc)
                continue
            for ds in documents:
                text = document_text(ds)
                if not text:
                    continue
                title = str(ds.get("DocumentTitle") or "") or _meaning(ds) or series.description or "report"
                when = study.date or str(ds.get("ContentDate", ""))
                reports.append(
                    PriorReport(
                        title=f"{title} ({when})" if when else title,
                        text=text,
                        source=citation(client.endpoint.name, study),
                        sop_instance_uid=str(ds.SOPInstanceUID),
                    )
                )
    return reports
