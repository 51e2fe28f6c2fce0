"""``/v1/pacs``: the configured PACS, QIDO-RS searches, and the work on a series that stores its results
back into the study (DICOM SEG + SR, encapsulated PDF + SR), plus importing prior reports into the
knowledge base. Generation and segmentation hold an admission slot like the other lab routes."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from medvlab.config import Language
from medvlab.errors import InputRefusedError
from medvlab.pacs import Filters
from medvlab.server.deps import Admitted, LabDep
from medvlab.services import pacs

router = APIRouter(prefix="/v1/pacs", tags=["pacs"])

UID = Field(min_length=1, max_length=64, pattern=r"^[0-9.]+$")
"""A DICOM UID: digits and dots, at most 64 characters."""


class SeriesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study: str = UID
    series: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[0-9.]+$")
    """None: the study's largest image series."""


class AskRequest(SeriesRequest):
    question: str = Field(min_length=1, max_length=8000)
    store_sr: bool = False
    """Store the answer as a DICOM SR in the study."""
    language: Language | None = None


class SegmentRequest(SeriesRequest):
    model: str | None = None
    store: bool = True
    sr: bool = True
    """Store a TID 1500 measurement SR beside the SEG."""


class ReportRequest(SeriesRequest):
    question: str = Field(min_length=1, max_length=8000)
    store: bool = True
    sr: bool = True
    """Store the answer as a text SR beside the encapsulated PDF."""
    segment: bool = False
    language: Language | None = None
    include_pdf: bool = False
    """Return the PDF itself (base64) in the answer."""


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient_id: str | None = Field(default=None, max_length=64)
    date: str | None = Field(default=None, max_length=17)
    limit: int = Field(default=200, ge=1, le=10000)


@router.get("")
def endpoints(lab: LabDep) -> dict[str, Any]:
    """The configured PACS (names, URLs, which variables hold credentials; never the secrets)."""
    return {"pacs": pacs.listing(lab.settings)}


@router.get("/{name}/studies")
def studies(
    name: str,
    lab: LabDep,
    patient_id: str | None = None,
    accession: str | None = None,
    date: str | None = None,
    modality: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """Studies matching the filters (QIDO-RS)."""
    filters = Filters(patient_id=patient_id, accession=accession, date=date, modality=modality)
    rows = pacs.search_studies(lab.settings, name, filters, max(1, min(limit, 1000)))
    return {"pacs": name, "studies": [s.as_dict() for s in rows]}


@router.get("/{name}/studies/{study}/series")
def series(name: str, study: str, lab: LabDep, modality: str | None = None) -> dict[str, Any]:
    """The series of a study (404 when the study is not in the PACS)."""
    return {
        "pacs": name,
        "study": study,
        "series": [s.as_dict() for s in pacs.search_series(lab.settings, name, study, modality)],
    }


@router.post("/{name}/get")
def get(name: str, body: SeriesRequest, lab: LabDep) -> dict[str, Any]:
    """Retrieve a series (WADO-RS) and load it as a volume; -> what it is (the pixels stay on the server)."""
    info, files = pacs.get(lab, name, body.study, body.series)
    return {"pacs": name, **info, "instances": len(files)}


@router.post("/{name}/ask")
def ask(name: str, body: AskRequest, lab: LabDep, guard: Admitted) -> dict[str, Any]:
    """Answer a question about a series; with ``store_sr`` the answer goes back as a DICOM SR."""
    result = pacs.ask(
        lab, name, body.study, body.question, body.series, store_sr=body.store_sr, language=body.language
    )
    return {"pacs": name, **result.as_dict()}


@router.post("/{name}/segment")
def segment(name: str, body: SegmentRequest, lab: LabDep, guard: Admitted) -> dict[str, Any]:
    """Segment a series; store the DICOM SEG (and a TID 1500 SR of the volumes) in its study."""
    from medvlab.seg.model import BUILTIN

    allowed = {*BUILTIN, lab.settings.seg_model}
    if body.model is not None and body.model not in allowed:
        raise InputRefusedError(
            f"Segmentation model '{body.model}' is not served here.",
            f"Use one of: {', '.join(sorted(allowed))} (the server's MEDVLAB_SEG_MODEL sets another).",
        )
    result = pacs.segment(
        lab, name, body.study, body.series, model=body.model, store_results=body.store, with_sr=body.sr
    )
    return {"pacs": name, **result.as_dict()}


@router.post("/{name}/report")
def report(name: str, body: ReportRequest, lab: LabDep, guard: Admitted) -> dict[str, Any]:
    """The PDF report of a series; stored as an Encapsulated PDF (and a text SR) in its study."""
    result = pacs.report(
        lab,
        name,
        body.study,
        body.question,
        body.series,
        store_results=body.store,
        with_sr=body.sr,
        segment_first=body.segment,
        language=body.language,
    )
    out = {"pacs": name, **result.as_dict()}
    if body.include_pdf:
        out["pdf_base64"] = base64.b64encode(result.pdf).decode("ascii")
    return out


@router.post("/{name}/import-reports")
def import_reports(name: str, body: ImportRequest, lab: LabDep) -> dict[str, Any]:
    """Add the text of prior reports (SR, encapsulated PDF) of a patient or dates to the knowledge base."""
    return {"pacs": name, **pacs.import_reports(lab, name, body.patient_id, body.date, body.limit)}
