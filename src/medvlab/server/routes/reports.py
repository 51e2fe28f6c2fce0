"""``/v1/reports``: a PDF report (or a DICOM Encapsulated PDF, or the answer as a DICOM text SR, in the
source study)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from medvlab.server.deps import Admitted, LabDep
from medvlab.server.schemas import ReportRequest
from medvlab.services.report import ReportRequest as Report
from medvlab.services.report import answer_sr, as_dicom, make_report

router = APIRouter(prefix="/v1", tags=["lab"])


@router.post("/reports", response_model=None)
def report(body: ReportRequest, lab: LabDep, guard: Admitted) -> Response:
    """A PDF report (or a DICOM Encapsulated PDF in the source study) for one image and question."""
    image = lab.load_image_reference(body.image)
    req = Report(
        question=body.question,
        answer=body.answer,
        window=body.window,
        max_slices=body.max_slices,
        language=body.language,
        max_new_tokens=body.max_new_tokens,
        structured=body.structured,
        heatmap=body.heatmap,
        kb=body.kb,
        segment=body.segment,
    )
    pdf, answer = make_report(lab, image, req, guard.cancel)
    if body.format == "dicom-sr":
        return Response(
            answer_sr(lab, image, body.question, answer, body.language),
            media_type="application/dicom",
            headers={"Content-Disposition": 'attachment; filename="medvlab-answer-sr.dcm"'},
        )
    if body.format == "dicom":
        return Response(
            as_dicom(pdf, image),
            media_type="application/dicom",
            headers={"Content-Disposition": 'attachment; filename="medvlab-report.dcm"'},
        )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": 'attachment; filename="medvlab-report.pdf"'},
    )
