"""The one report pipeline: answer (optionally grounded, segmented, structured, explained), then a PDF,
or the PDF as a DICOM Encapsulated PDF in the source study. The CLI and the API both call ``make_report``."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medvlab.config import Language
from medvlab.imaging import MedImage
from medvlab.vlm.prompting import Turn

if TYPE_CHECKING:
    from medvlab.services.lab import Lab


@dataclass(frozen=True)
class ReportRequest:
    """What goes into one report."""

    question: str
    answer: str | None = None
    """An answer already given; generated when None."""
    window: str | None = None
    max_slices: int | None = None
    language: Language | None = None
    max_new_tokens: int | None = None
    structured: bool = False
    heatmap: bool = False
    kb: int = 0
    segment: bool = False


def make_report(
    lab: Lab, image: MedImage, req: ReportRequest, cancel: threading.Event | None = None
) -> tuple[bytes, str]:
    """(PDF bytes, the answer) for ``image`` and ``req``."""
    turns = [Turn("user", req.question, [image])]
    prompt = lab.prompt_options(req.window, req.max_slices, req.language)
    generation = lab.generation_options(max_new_tokens=req.max_new_tokens)
    hits = lab.kb_search(req.question, req.kb) if req.kb else []
    segmentation = lab.segment(image) if req.segment else None
    volumes = segmentation.volumes_ml if segmentation is not None else None
    answer = req.answer or "".join(
        lab.chat(turns, prompt, generation, cancel=cancel, grounding=hits, measurements=volumes)
    )
    findings = lab.structured(turns, prompt, generation, cancel=cancel) if req.structured else None
    heatmaps = lab.explain(turns, answer, prompt) if req.heatmap else []
    pdf = lab.report(
        image,
        [(req.question, answer)],
        window=req.window,
        structured=findings,
        heatmaps=heatmaps,
        citations=hits,
        segmentation=segmentation,
        language=req.language,
    )
    return pdf, answer


def as_dicom(pdf: bytes, image: MedImage) -> bytes:
    """The PDF as a DICOM Encapsulated PDF that belongs to ``image``'s study (Part 10 bytes)."""
    from pydicom.filebase import DicomBytesIO

    from medvlab.reports.dicom import encapsulate_pdf

    out = DicomBytesIO()
    encapsulate_pdf(pdf, image.metadata).save_as(out, enforce_file_format=True)
    return bytes(out.getvalue())
