"""``/v1/analyze``: one uploaded file and a question, the answer streamed back as plain text."""

from __future__ import annotations

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import StreamingResponse

from medvlab.server.deps import Admitted, LabDep
from medvlab.vlm.prompting import Turn

router = APIRouter(prefix="/v1", tags=["lab"])


@router.post("/analyze", response_model=None)
def analyze(
    lab: LabDep,
    guard: Admitted,
    file: UploadFile = File(..., description="PNG/JPG, DICOM or NIfTI file."),
    question: str = Form(...),
    window: str | None = Form(None),
    max_slices: int | None = Form(None),
    language: str | None = Form(None),
    max_new_tokens: int | None = Form(None),
) -> StreamingResponse:
    """Upload one file and a question; the answer streams back as plain text (curl-friendly)."""
    cap = int(lab.limits.max_file_mb * 2**20)
    data = file.file.read(cap + 1)  # never read more than the limit allows; load_bytes refuses cap + 1
    image = lab.load_image_bytes(data, file.filename or "upload")
    prompt = lab.prompt_options(window, max_slices, language)  # type: ignore[arg-type]
    options = lab.generation_options(max_new_tokens=max_new_tokens)
    chunks = lab.chat([Turn("user", question, [image])], prompt, options, cancel=guard.cancel)
    return StreamingResponse(guard.stream(chunks), media_type="text/plain; charset=utf-8")
