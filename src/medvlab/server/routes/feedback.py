"""Clinician feedback: store a rating with a de-identified copy of the image; export it as training data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from medvlab.errors import look_up_option
from medvlab.server.deps import LabDep
from medvlab.server.schemas import FeedbackRequest

router = APIRouter(prefix="/v1", tags=["lab"])


@router.post("/feedback")
def feedback(body: FeedbackRequest, lab: LabDep) -> dict[str, Any]:
    """Store a rating (and better answer) with a copy of the image; it survives restarts."""
    fid = lab.record_feedback_reference(
        body.image, body.question, body.answer, body.rating, body.better_answer, body.window, body.max_slices
    )
    return {"id": fid, "total": lab.feedback_count()}


@router.get("/feedback/export", response_model=None)
def feedback_export(lab: LabDep, format: str = "dpo") -> Response:
    """The stored feedback as JSONL training data (``format`` = dpo or sft)."""
    fmt = look_up_option(format, ["dpo", "sft"], "format")
    return Response(lab.feedback_export(fmt), media_type="application/x-ndjson")
