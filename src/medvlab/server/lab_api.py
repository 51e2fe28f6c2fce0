"""medvlab's own REST routes: analyze (multipart), explain, reports, knowledge base."""

from __future__ import annotations

import base64
import io
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response, StreamingResponse

from medvlab.imaging.types import MedImage
from medvlab.kb.store import Snippet
from medvlab.server.openai_api import admit, get_lab
from medvlab.server.schemas import (
    AdapterRequest,
    ExplainRequest,
    FeedbackRequest,
    ImageRequest,
    ReportRequest,
    SegmentRequest,
    SnippetsRequest,
)
from medvlab.services import Lab
from medvlab.vlm.prompting import Turn

router = APIRouter(prefix="/v1", tags=["lab"])


def _turns(lab: Lab, body: ImageRequest) -> tuple[MedImage, list[Turn]]:
    image = lab.load_image_reference(body.image)
    return image, [Turn("user", body.question, [image])]


def _png_uri(picture: Any) -> str:
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@router.post("/analyze", response_model=None)
def analyze(
    request: Request,
    file: UploadFile = File(..., description="PNG/JPG, DICOM or NIfTI file."),
    question: str = Form(...),
    window: str | None = Form(None),
    max_slices: int | None = Form(None),
    language: str | None = Form(None),
    max_new_tokens: int | None = Form(None),
    lab: Lab = Depends(get_lab),
) -> StreamingResponse:
    """Upload one file and a question; the answer streams back as plain text (curl-friendly)."""
    cap = int(lab.limits.max_file_mb * 2**20)
    data = file.file.read(cap + 1)  # never read more than the limit allows; load_bytes refuses cap + 1
    image = lab.load_image_bytes(data, file.filename or "upload")
    prompt = lab.prompt_options(window, max_slices, language)  # type: ignore[arg-type]
    guard = admit(request, lab)
    try:
        options = lab.generation_options(max_new_tokens=max_new_tokens)
        chunks = lab.chat([Turn("user", question, [image])], prompt, options, cancel=guard.cancel)
    except BaseException:
        guard.release()
        raise
    return StreamingResponse(guard.stream(chunks), media_type="text/plain; charset=utf-8")


@router.post("/explain")
def explain(body: ExplainRequest, request: Request, lab: Lab = Depends(get_lab)) -> dict[str, Any]:
    """Attention maps of an answer over the image(s) it was given, as PNG data URIs."""
    _, turns = _turns(lab, body)
    prompt = lab.prompt_options(body.window, body.max_slices, body.language)
    with admit(request, lab):
        heatmaps = lab.explain(turns, body.answer, prompt, body.span)
    return {"heatmaps": [{"label": label, "png": _png_uri(pic)} for pic, label in heatmaps]}


@router.post("/reports", response_model=None)
def report(body: ReportRequest, request: Request, lab: Lab = Depends(get_lab)) -> Response:
    """A PDF report (or a DICOM Encapsulated PDF in the source study) for one image and question."""
    image, turns = _turns(lab, body)
    prompt = lab.prompt_options(body.window, body.max_slices, body.language)
    generation = lab.generation_options(max_new_tokens=body.max_new_tokens)
    hits = lab.kb_search(body.question, body.kb) if body.kb else []
    with admit(request, lab) as guard:
        segmentation = lab.segment(image) if body.segment else None
        volumes = segmentation.volumes_ml if segmentation is not None else None
        answer = body.answer or "".join(
            lab.chat(turns, prompt, generation, cancel=guard.cancel, grounding=hits, measurements=volumes)
        )
        findings = lab.structured(turns, prompt, generation) if body.structured else None
        heatmaps = lab.explain(turns, answer, prompt) if body.heatmap else []
    pdf = lab.report(
        image,
        [(body.question, answer)],
        window=body.window,
        structured=findings,
        heatmaps=heatmaps,
        citations=hits,
        segmentation=segmentation,
        language=body.language,
    )
    if body.format == "dicom":
        from pydicom.filebase import DicomBytesIO

        from medvlab.reports.dicom import encapsulate_pdf

        out = DicomBytesIO()
        encapsulate_pdf(pdf, image.metadata).save_as(out, enforce_file_format=True)
        return Response(
            out.getvalue(),
            media_type="application/dicom",
            headers={"Content-Disposition": 'attachment; filename="medvlab-report.dcm"'},
        )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": 'attachment; filename="medvlab-report.pdf"'},
    )


@router.post("/segment", response_model=None)
def segment(body: SegmentRequest, request: Request, lab: Lab = Depends(get_lab)) -> Any:
    """Segment a 3-D volume: structures and volumes (mL) as JSON, the mask as NIfTI, or a DICOM SEG."""
    from medvlab.errors import InputRefusedError
    from medvlab.seg.model import BUILTIN

    allowed = {*BUILTIN, lab.settings.seg_model}
    if body.model is not None and body.model not in allowed:
        raise InputRefusedError(
            f"Segmentation model '{body.model}' is not served here.",
            f"Use one of: {', '.join(sorted(allowed))} (the server's MEDVLAB_SEG_MODEL sets another).",
        )
    if body.format == "dicom-seg":
        with admit(request, lab):
            _, data = lab.segment_to_dicom_seg(body.image, body.model)
        return Response(
            data,
            media_type="application/dicom",
            headers={"Content-Disposition": 'attachment; filename="medvlab-seg.dcm"'},
        )
    image = lab.load_image_reference(body.image)
    with admit(request, lab):
        result = lab.segment(image, body.model)
    if body.format == "nifti":
        import tempfile
        from pathlib import Path

        from medvlab.seg.outputs import write_nifti

        with tempfile.TemporaryDirectory(prefix="medvlab-seg-") as tmp:
            data = write_nifti(result.labels, image, Path(tmp) / "mask.nii.gz").read_bytes()
        return Response(
            data,
            media_type="application/gzip",
            headers={"Content-Disposition": 'attachment; filename="medvlab-mask.nii.gz"'},
        )
    return {"model": body.model or lab.settings.seg_model, **result.summary()}


@router.post("/kb/snippets")
def kb_add(body: SnippetsRequest, lab: Lab = Depends(get_lab)) -> dict[str, Any]:
    """Add prior-report snippets to the knowledge base."""
    from medvlab.vlm.prompting import detect_language

    ids = lab.kb.add([Snippet(s.title, s.text, s.source, detect_language(s.text)) for s in body.snippets])
    return {"added": len(ids), "ids": ids, "total": lab.kb.store.count()}


@router.get("/kb/search")
def kb_search(q: str, k: int = 5, lab: Lab = Depends(get_lab)) -> dict[str, Any]:
    """The knowledge-base snippets closest to ``q`` (Chinese or English), with citations."""
    hits = lab.kb_search(q, max(1, min(k, 50)))
    return {
        "query": q,
        "hits": [
            {
                "rank": h.rank,
                "score": h.score,
                "via": list(h.via),
                "citation": h.citation(),
                "title": h.snippet.title,
                "source": h.snippet.source,
                "text": h.snippet.text,
            }
            for h in hits
        ],
    }


@router.post("/feedback")
def feedback(body: FeedbackRequest, lab: Lab = Depends(get_lab)) -> dict[str, Any]:
    """Store a rating (and better answer) with a copy of the image; it survives restarts."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="medvlab-fb-") as tmp:
        if body.image.strip().startswith("data:"):
            data, name = lab.decode_data_uri(body.image)
            lab.load_image_bytes(data, name)  # refuse non-images before storing anything
            path = Path(tmp) / name
            path.write_bytes(data)
            files = [path]
        else:
            lab.load_image_reference(body.image)  # applies the local-path policy
            src = Path(body.image.removeprefix("file://"))
            files = sorted(p for p in src.iterdir() if p.is_file()) if src.is_dir() else [src]
        fid = lab.record_feedback(
            files, body.question, body.answer, body.rating, body.better_answer, body.window, body.max_slices
        )
    return {"id": fid, "total": lab.feedback.count()}


@router.get("/feedback/export", response_model=None)
def feedback_export(format: str = "dpo", lab: Lab = Depends(get_lab)) -> Response:
    """The stored feedback as JSONL training data (``format`` = dpo or sft)."""
    import tempfile
    from pathlib import Path

    from medvlab.errors import look_up_option

    fmt = look_up_option(format, ["dpo", "sft"], "format")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.jsonl"
        lab.feedback.export(path, fmt)
        return Response(path.read_bytes(), media_type="application/x-ndjson")


@router.get("/adapters")
def adapters(lab: Lab = Depends(get_lab)) -> dict[str, Any]:
    return {"model": lab.model_id, "adapter": lab.adapter}


@router.post("/adapters")
def set_adapter(body: AdapterRequest, lab: Lab = Depends(get_lab)) -> dict[str, Any]:
    """Hot-swap: apply an adapter to the served model without a restart."""
    return {"model": lab.model_id, "adapter": lab.set_adapter(body.path)}


@router.delete("/adapters")
def clear_adapter(lab: Lab = Depends(get_lab)) -> dict[str, Any]:
    """Serve the base model again."""
    return {"model": lab.model_id, "adapter": lab.set_adapter(None)}
