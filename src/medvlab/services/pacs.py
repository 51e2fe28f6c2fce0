"""The lab on a PACS: search, get a series into a volume, ask about it, segment it and store the DICOM SEG
(+ a TID 1500 measurement SR), report on it and store the encapsulated PDF (+ a text SR), and import the
text of prior reports into the knowledge base. The CLI, the REST routes and the web UI all call these.

Results are built in full before anything is stored, and stored in one STOW-RS request, so a failure
while building (a bad series, a model error) leaves the PACS as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from medvlab import scratch
from medvlab.config import Language, Settings
from medvlab.errors import PacsStoreError, RequestError
from medvlab.imaging import MedImage
from medvlab.pacs import Filters, PacsClient, PacsEndpoint, SeriesRow, Stored, StudyRow, endpoints, pick
from medvlab.vlm.prompting import Turn

if TYPE_CHECKING:
    from medvlab.seg.infer import Segmentation
    from medvlab.services.lab import Lab

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)`` while a series' instances arrive from the PACS."""


def configured(settings: Settings) -> dict[str, PacsEndpoint]:
    """The PACS endpoints of ``MEDVLAB_PACS`` and ``MEDVLAB_PACS_CONFIG``, by name."""
    return endpoints(settings.pacs, settings.pacs_config)


def client(settings: Settings, name: str | None) -> PacsClient:
    """A client for the PACS called ``name`` (did-you-mean when there is none by that name)."""
    return PacsClient(pick(configured(settings), name))


def listing(settings: Settings) -> list[dict[str, Any]]:
    """The configured endpoints as shown to users (names, URLs and which variables; never secrets)."""
    return [
        {"name": e.name, "url": e.url, "credentials": e.credentials_hint}
        for e in configured(settings).values()
    ]


# -- search ------------------------------------------------------------------------------------------
def search_studies(
    settings: Settings, name: str | None, filters: Filters, limit: int = 100
) -> list[StudyRow]:
    return client(settings, name).search_studies(filters, limit)


def search_series(
    settings: Settings, name: str | None, study_uid: str, modality: str | None = None
) -> list[SeriesRow]:
    return client(settings, name).search_series(study_uid, modality)


# -- a series as a volume ----------------------------------------------------------------------------
@dataclass
class Fetched:
    """A series retrieved from a PACS: the loaded image, its files (in a scratch folder while in use)."""

    pacs: PacsClient
    study: StudyRow
    series: SeriesRow
    image: MedImage
    files: list[Path]

    @cached_property
    def headers(self) -> list[Dataset]:
        """The series' DICOM headers in the image's slice order (what SEG and SR reference)."""
        from medvlab.imaging.segmentation_objects import source_datasets

        return source_datasets(self.files, self.image)

    def describe(self) -> dict[str, Any]:
        return {"study": self.study.as_dict(), "series": self.series.as_dict(), "image": self.image.summary()}


@contextmanager
def fetched(
    lab: Lab,
    name: str | None,
    study_uid: str,
    series_uid: str | None = None,
    progress: Progress | None = None,
) -> Iterator[Fetched]:
    """Retrieve a series (the largest image series of the study when ``series_uid`` is None) into a scratch
    folder and load it within the lab's decode limits; the files are deleted when the block ends."""
    pacs = client(lab.settings, name)
    study = pacs.study(study_uid)
    series = pacs.pick_series(study_uid, series_uid)
    if not series.is_image:
        raise RequestError(
            f"Series {series.series_uid} is a {series.modality} object, not images.",
            "Pick an image series of the study (medvlab pacs search --study UID lists them).",
        )
    with scratch.temp_dir("pacs-") as folder:
        files = pacs.retrieve_series(series, folder, lab.limits, progress)
        image = lab.load_image(files)
        yield Fetched(pacs, study, series, image, files)


def get(
    lab: Lab,
    name: str | None,
    study_uid: str,
    series_uid: str | None = None,
    output: Path | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """(description, the series' files as (name, bytes)); with ``output``, also written there."""
    with fetched(lab, name, study_uid, series_uid, progress) as got:
        files = [(p.name, p.read_bytes()) for p in got.files]
        info = got.describe()
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        for file_name, data in files:
            (output / file_name).write_bytes(data)
        info["written"] = str(output)
    return info, files


# -- results back into the study ---------------------------------------------------------------------
def store(got: Fetched, objects: list[tuple[str, Dataset]]) -> Stored:
    """Store built objects in the source study (checked to be in it first; one STOW-RS request)."""
    for kind, ds in objects:
        ds.ensure_file_meta()  # STOW-RS sends Part 10 files
        if str(ds.get("PatientID", "")) != str(got.study.patient_id):
            raise PacsStoreError(
                f"The {kind} object does not carry the study's patient ID; nothing was stored.",
                "This is a bug in medvlab; please report it.",
            )
    return got.pacs.store(got.study.study_uid, objects)


def _answer_sr(lab: Lab, got: Fetched, question: str, answer: str, language: str) -> Dataset:
    from medvlab.imaging.structured_reports import answer_report
    from medvlab.vlm.prompting import DISCLAIMERS

    return answer_report(
        got.headers,
        question,
        answer,
        model=lab.model_id,
        adapter=lab.adapter,
        disclaimer=DISCLAIMERS.get(language, DISCLAIMERS["en"]),
        language=language,
    )


@dataclass
class AskResult:
    answer: str
    stored: Stored | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "stored": self.stored.as_dict() if self.stored else None, **self.info}


def ask(
    lab: Lab,
    name: str | None,
    study_uid: str,
    question: str,
    series_uid: str | None = None,
    *,
    store_sr: bool = False,
    language: Language | None = None,
    progress: Progress | None = None,
    on_text: Callable[[str], None] | None = None,
) -> AskResult:
    """Answer ``question`` about a series; with ``store_sr``, store the answer as a text SR in its study."""
    from medvlab.vlm.prompting import detect_language

    if not question.strip():
        raise RequestError("The question is empty.", "Type a question about the series.")
    with fetched(lab, name, study_uid, series_uid, progress) as got:
        turns = [Turn("user", question, [got.image])]
        parts = []
        for chunk in lab.chat(turns, lab.prompt_options(language=language)):
            parts.append(chunk)
            if on_text:
                on_text(chunk)
        answer = "".join(parts)
        stored = None
        if store_sr:
            lang = language or detect_language(question)
            stored = store(got, [("SR", _answer_sr(lab, got, question, answer, lang))])
        return AskResult(answer, stored, got.describe())


@dataclass
class SegmentResult:
    volumes_ml: dict[str, float]
    summary: dict[str, Any]
    stored: Stored | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        stored = self.stored.as_dict() if self.stored else None
        return {**self.summary, "volumes_ml": self.volumes_ml, "stored": stored, **self.info}


def build_seg(lab: Lab, got: Fetched, segmentation: Segmentation, model: str | None) -> Dataset:
    """The DICOM SEG of ``segmentation``, referencing the fetched series."""
    import pydicom

    from medvlab.seg.outputs import write_dicom_seg

    model_name = Path(model or lab.settings.seg_model).stem
    with scratch.temp_dir("pacs-seg-") as tmp:
        path = write_dicom_seg(
            segmentation.labels, got.image, got.files, segmentation.spec, tmp / "seg.dcm", model_name
        )
        return pydicom.dcmread(path)


def segment(
    lab: Lab,
    name: str | None,
    study_uid: str,
    series_uid: str | None = None,
    *,
    model: str | None = None,
    store_results: bool = True,
    with_sr: bool = True,
    progress: Progress | None = None,
) -> SegmentResult:
    """Segment a series; store its DICOM SEG (and a TID 1500 SR of the volumes) in the same study."""
    from medvlab.imaging.structured_reports import measurement_report

    with fetched(lab, name, study_uid, series_uid, progress) as got:
        result = lab.segment(got.image, model)
        stored = None
        if store_results:
            seg_ds = build_seg(lab, got, result, model)  # every object is built before any is stored
            objects = [("SEG", seg_ds)]
            if with_sr:
                sr = measurement_report(
                    got.headers, seg_ds, result.volumes_ml, model=model or lab.settings.seg_model
                )
                objects.append(("SR", sr))
            stored = store(got, objects)
        return SegmentResult(result.volumes_ml, result.summary(), stored, got.describe())


@dataclass
class ReportResult:
    pdf: bytes
    answer: str
    stored: Stored | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        stored = self.stored.as_dict() if self.stored else None
        return {"answer": self.answer, "pdf_bytes": len(self.pdf), "stored": stored, **self.info}


def report(
    lab: Lab,
    name: str | None,
    study_uid: str,
    question: str,
    series_uid: str | None = None,
    *,
    store_results: bool = True,
    with_sr: bool = True,
    segment_first: bool = False,
    language: Language | None = None,
    progress: Progress | None = None,
) -> ReportResult:
    """The PDF report of a series, stored as an Encapsulated PDF (+ the answer as a text SR) in its study."""
    from medvlab.imaging.documents import encapsulate_pdf
    from medvlab.services.report import ReportRequest, make_report
    from medvlab.vlm.prompting import detect_language

    if not question.strip():
        raise RequestError("The question is empty.", "Type a question about the series.")
    with fetched(lab, name, study_uid, series_uid, progress) as got:
        req = ReportRequest(question=question, language=language, segment=segment_first)
        pdf, answer = make_report(lab, got.image, req)
        stored = None
        if store_results:
            sources = got.headers
            objects = [("PDF", encapsulate_pdf(pdf, got.image.metadata, sources=sources))]
            if with_sr:
                lang = language or detect_language(question)
                objects.append(("SR", _answer_sr(lab, got, question, answer, lang)))
            stored = store(got, objects)
        return ReportResult(pdf, answer, stored, got.describe())


# -- prior reports into the knowledge base -----------------------------------------------------------
def import_reports(
    lab: Lab, name: str | None, patient_id: str | None = None, date: str | None = None, limit: int = 200
) -> dict[str, Any]:
    """Add the text of the SR and encapsulated-PDF reports of a patient's studies (or of a date range) to
    the knowledge base, each citing its study; -> counts and the studies they came from."""
    from medvlab.pacs.documents import prior_reports

    if not (patient_id or date):
        raise RequestError(
            "Importing reports needs a patient ID or a date range.",
            "Pass --patient-id ID and/or --date YYYYMMDD-YYYYMMDD.",
        )
    pacs = client(lab.settings, name)
    reports = prior_reports(pacs, Filters(patient_id=patient_id, date=date), limit)
    before = lab.kb_count()
    if reports:  # the knowledge base keeps one copy of a text: importing again adds nothing new
        lab.kb_add_texts([(r.title, r.text, r.source) for r in reports])
    return {
        "reports": len(reports),
        "added": lab.kb_count() - before,
        "sources": sorted({r.source for r in reports}),
        "total": lab.kb_count(),
    }
